"""A real agent's datagrams amid a flood of garbage: how many the collector still decodes.

The collector (``sflowtool-py --prometheus``, pinned to CPU 0) receives the
reference capture of hsflowd (``host-flows``: flow and counter samples) at
``--valid`` datagrams/s from one socket, and garbage from 64 sockets on
addresses spread over 127.0.0.0/8 (random source addresses and ports, as a
spoofing flood has): a third random bytes, a third version 5 followed by
random bytes, a third real datagrams cut short.  The sender runs on CPU 1.
For each garbage rate (none, ``--factor`` times the valid rate, and as
fast as the sender can go) it prints what was sent, what the collector
decoded of the agent's datagrams (its per-agent counter), the garbage it
counted, what the kernel dropped (the socket's drop count) and the
collector's CPU time.  Run as root so the collector gets its 8 MB socket
buffer.

    .venv/bin/python bench/garbage_flood.py [--seconds 10] [--valid 2000] [--factor 10]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_proc import CollectorProcess, spoofed_loopback_senders

from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import decode_datagram

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
TICK = 0.002


def valid_payloads() -> tuple[list[bytes], set[str]]:
    with open(VECTORS / "host-flows.pcap", "rb") as f:
        payloads = [p.payload for p in read_pcap(f)]
    return payloads, {str(decode_datagram(p).agent) for p in payloads}


def garbage_payloads(valid: list[bytes], count: int = 3000) -> list[bytes]:
    rng = random.Random(21)
    out = []
    for n in range(count):
        kind = n % 3
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 1400)))
        elif kind == 1:
            out.append(b"\0\0\0\5" + rng.randbytes(rng.randrange(0, 1400)))
        else:
            real = rng.choice(valid)
            out.append(real[: rng.randrange(0, len(real))])
    return out



def run(
    valid: list[bytes], agents: set[str], garbage: list[bytes], rate: float, garbage_rate: float | None, seconds: float
) -> None:
    """One run; ``garbage_rate`` None sends garbage as fast as the sender can between valid datagrams."""
    collector = CollectorProcess(cpu=0)
    target = ("127.0.0.1", collector.udp)
    agent_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood = spoofed_loopback_senders(64, seed=5)
    cpu_before, drops_before = collector.cpu_seconds(), collector.udp_drops()
    sent_valid = sent_garbage = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(int(elapsed * rate) - sent_valid):
            agent_socket.sendto(valid[sent_valid % len(valid)], target)
            sent_valid += 1
        owed = 200 if garbage_rate is None else int(elapsed * garbage_rate) - sent_garbage
        for _ in range(owed):
            flood[sent_garbage % len(flood)].sendto(garbage[sent_garbage % len(garbage)], target)
            sent_garbage += 1
        if garbage_rate is not None:
            time.sleep(TICK)
    elapsed = time.perf_counter() - start
    time.sleep(1.0)  # let it drain its socket buffer
    cpu = collector.cpu_seconds() - cpu_before
    drops = collector.udp_drops() - drops_before
    m = collector.metrics()
    collector.stop()
    for s in (agent_socket, *flood):
        s.close()
    decoded = sum(m.get(f'sflow_collector_agent_datagrams_total{{agent="{a}"}}', 0) for a in agents)
    shown = "flat out" if garbage_rate is None else f"{garbage_rate:,.0f}/s"
    print(
        f"garbage {shown:>10}: sent {sent_valid / elapsed:>6,.0f} valid/s + {sent_garbage / elapsed:>8,.0f} garbage/s; "
        f"decoded {decoded:,.0f} of {sent_valid:,} valid ({decoded / sent_valid:.1%}); "
        f"garbage counted {m['sflow_collector_decode_errors_total']:,.0f} of {sent_garbage:,}; "
        f"kernel dropped {drops:,}; collector CPU {cpu / elapsed:.0%} of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--valid", type=float, default=2000.0, help="the agent's datagrams per second")
    parser.add_argument("--factor", type=float, default=10.0, help="garbage per valid datagram")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1 if (os.cpu_count() or 1) > 1 else 0})
    valid, agents = valid_payloads()
    garbage = garbage_payloads(valid)
    for garbage_rate in (0.0, args.factor * args.valid, None):
        run(valid, agents, garbage, args.valid, garbage_rate, args.seconds)


if __name__ == "__main__":
    main()
