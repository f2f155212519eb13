"""The exporter's memory under 70,000 spoofed data sources and 20 concurrent scrapes, with its default limits.

Each spoofed source is the full host counter sample of the reference
capture (``host-flows``: host description, CPU, memory, disk, network,
MIB-II; about 170 series), sent over loopback to ``sflowtool-py
--prometheus`` in two ways, each to a fresh process:

* ``agents``: 70,000 different agent addresses (the agent-address field
  inside the datagram), sent from 256 sockets on addresses spread over
  127.0.0.0/8 (spoofed source addresses);
* ``established``: the same, each datagram sent twice, so that every
  spoofed agent looks established (heard more than once): the worst case
  for memory, up to the series limit;
* ``sources``: one agent claiming 70,000 data sources (the ds_index field).

Then 20 scrapes at once.  It prints the collector's RSS before, at its peak
(VmHWM) and after, what it holds (agents, sources, series) and what it
evicted, the scrape's size and time, and how many of the 20 bodies were
one render.

    .venv/bin/python bench/exporter_spoof.py [--sources 70000] [--scrapes 20] [-- extra sflowtool-py flags]
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_proc import CollectorProcess, spoofed_loopback_senders

from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.samples import CounterSample, Datagram

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
AGENT_AT = 8  # the IPv4 agent address in the datagram header
DS_INDEX_AT = 28 + 8 + 8  # the first sample's ds_index (expanded counter sample: sequence, class, index)
BACKLOG = 1 << 20  # bytes queued at the collector's socket before the sender waits: nothing is dropped


def host_counters() -> bytes:
    """A datagram holding only the reference host's counter sample, with an IPv4 agent."""
    with open(VECTORS / "host-flows.pcap", "rb") as f:
        for packet in read_pcap(f):
            datagram = decode_datagram(packet.payload)
            for sample in datagram.samples:
                if isinstance(sample, CounterSample) and sample.ds_class == 2:
                    agent = ipaddress.ip_address("10.0.0.1")
                    return encode_datagram(Datagram(agent, 0, 1, 1000, [sample]))
    sys.exit(f"no host counter sample in {VECTORS / 'host-flows.pcap'}")


def spoofed(template: bytes, mode: str, n: int) -> bytes:
    data = bytearray(template)
    if mode != "sources":
        struct.pack_into(">I", data, AGENT_AT, int(ipaddress.ip_address("10.0.0.0")) + n)
    else:
        struct.pack_into(">I", data, DS_INDEX_AT, n)
    return bytes(data)



def scrape_at_once(collector: CollectorProcess, count: int) -> tuple[list[bytes], float]:
    bodies: list[bytes] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda: bodies.append(collector.body())) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bodies, time.perf_counter() - start


def run(mode: str, total: int, scrapes: int, flags: list[str]) -> None:
    collector = CollectorProcess(*flags)
    collector.body()
    before = collector.status_kib("VmRSS")
    template = host_counters()
    socks = spoofed_loopback_senders(1 if mode == "sources" else 256, seed=7)
    target = ("127.0.0.1", collector.udp)
    drops = collector.udp_drops()
    start = time.perf_counter()
    for n in range(total):
        payload = spoofed(template, mode, n)
        for _ in range(2 if mode == "established" else 1):
            socks[n % len(socks)].sendto(payload, target)
        if n % 200 == 199:
            while collector.udp_queued() > BACKLOG:
                time.sleep(0.005)
    while collector.udp_queued():
        time.sleep(0.05)
    sent_in = time.perf_counter() - start
    drops = collector.udp_drops() - drops
    time.sleep(1.1)  # past the render cache of the scrape before the flood
    bodies, took = scrape_at_once(collector, scrapes)
    peak, after = collector.status_kib("VmHWM"), collector.status_kib("VmRSS")
    m = collector.metrics()
    collector.stop()
    for s in socks:
        s.close()
    print(
        f"{mode}: {total:,} spoofed sources ({len(template)}-byte datagrams) in {sent_in:.0f} s, "
        f"then {scrapes} scrapes at once"
    )
    print(f"  RSS before {before / 1024:.0f} MB, peak {peak / 1024:.0f} MB, after {after / 1024:.0f} MB")
    evicted = {what: m[f'sflow_collector_evicted_total{{what="{what}"}}'] for what in ("agent", "source")}
    print(
        f"  taken in {m['sflow_collector_datagrams_total']:,.0f} datagrams ({drops:,} dropped); "
        f"holding {m['sflow_collector_agents']:,.0f} agents, {m['sflow_collector_data_sources']:,.0f} sources, "
        f"{m['sflow_collector_series']:,.0f} series; "
        f"evicted {evicted['agent']:,.0f} agents, {evicted['source']:,.0f} sources"
    )
    print(
        f"  {scrapes} scrapes in {took:.2f} s, {len(bodies[0]) / 1e6:.1f} MB each, "
        f"{len(set(bodies))} distinct bodies; {m['sflow_collector_http_renders_total']:,.0f} renders in all "
        "(one before the flood)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=70_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("flags", nargs="*", help="extra sflowtool-py flags, after --")
    args = parser.parse_args()
    for mode in ("agents", "established", "sources"):
        run(mode, args.sources, args.scrapes, args.flags)


if __name__ == "__main__":
    main()
