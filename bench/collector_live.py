"""One agent sampling 1-in-2 on ~100 kpps, received live by ``sflowtool-py --prometheus -f``: is anything lost?

The traffic is ``bench/sampling.py``'s: 64-byte UDP frames from iperf3 across a veth pair into a
namespace.  The real agent samples the host end (``pcap``, 1-in-2, the cbpf sampler by default) and
sends to the collector, which exports to Prometheus and forwards every datagram (``-f``) to a
counting sink.  Printed:

* datagrams and flow samples per second the collector took in (its own counters, over HTTP);
* datagrams lost on the way from the agent, as the collector counts them: gaps in each agent's and
  sub-agent's datagram sequence numbers (``sflow_collector_agent_lost_datagrams_total``);
* what the kernel dropped on the collector's socket (``/proc/net/udp``), what it forwarded, and what
  the sink received;
* the collector's CPU time per second.

Needs root and iperf3.  Takes the machine's two CPUs for a while: run under the heavy lock.

The agent packs about nine samples of a 64-byte frame into its default 1,400-byte datagram;
``--datagram-bytes 600`` makes it send about 13,000 datagrams/s of four samples each, the rate the
issue names for this link.

    .venv/bin/python bench/collector_live.py [--seconds 10] [--pps 104000] [--rate 2] [--datagram-bytes 1400]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from collector_proc import CollectorProcess
from sampling import PORT, ROOT, traffic, veth_pair, wait_for

COUNTING_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
count = 0
while s.recv(65536) != b"stop":
    count += 1
print(count, flush=True)
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--pps", type=int, default=104_000)
    p.add_argument("--rate", type=int, default=2)
    p.add_argument("--sampler", default="cbpf", choices=("cbpf", "ebpf"))
    p.add_argument(
        "--datagram-bytes", type=int, default=1400, help="the agent's datagramBytes: smaller, more datagrams per sample"
    )
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: namespaces, raw sockets")
    sink = subprocess.Popen([sys.executable, "-c", COUNTING_SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    collector = CollectorProcess("-f", f"127.0.0.1/{sink_port}")
    with veth_pair("pcbl", ipv6=False) as v, tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            v.exec("iperf3", "-s", "-p", str(PORT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        conf, log = Path(tmp, "agent.conf"), Path(tmp, "agent.log")
        conf.write_text(
            f"sflow {{ polling = 0 datagramBytes = {a.datagram_bytes} "
            f"collector {{ ip = 127.0.0.1 udpport = {collector.udp} }} "
            f"pcap {{ dev = {v.host_dev} sampling = {a.rate} sampler = {a.sampler} }} }}"
        )
        args = ["-m", "hsflowd_py", "-d", "-P", "-f", str(conf), "-o", str(Path(tmp, "auto"))]
        with open(log, "w") as err:
            agent = subprocess.Popen([sys.executable, *args, "-s", str(Path(tmp, "status.sock"))], stderr=err, cwd=ROOT)
        try:
            wait_for(agent, log, f"sampling {v.host_dev} ")  # type: ignore[arg-type]
            time.sleep(1)
            before, cpu0, t0 = collector.metrics(), collector.cpu_seconds(), time.monotonic()
            traffic(v, a.seconds, a.pps)
            time.sleep(1.5)  # the agent's last datagram, the collector's queue drained
            after, cpu1, elapsed = collector.metrics(), collector.cpu_seconds(), time.monotonic() - t0 - 1.5
        finally:
            agent.terminate()
            agent.wait(10)
            server.terminate()
            server.wait(10)
    drops = collector.udp_drops()
    collector.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"stop", ("127.0.0.1", sink_port))
    received_by_sink = int(sink.communicate(timeout=30)[0])

    def delta(prefix: str) -> float:
        return sum(v for k, v in after.items() if k.startswith(prefix)) - sum(
            v for k, v in before.items() if k.startswith(prefix)
        )

    datagrams = delta("sflow_collector_datagrams_total")
    flow = [k for k in after if k.startswith("sflow_collector_agent_samples_total") and 'type="flow"' in k]
    samples = sum(after[k] - before.get(k, 0) for k in flow)
    lost = delta("sflow_collector_agent_lost_datagrams_total")
    forwarded = sum(v for k, v in after.items() if k.startswith("sflow_collector_forwarded_total"))
    print(
        f"{a.pps:,} packets/s of 64-byte UDP for {a.seconds:g} s, the agent sampling 1-in-{a.rate} ({a.sampler}, "
        f"datagramBytes {a.datagram_bytes}); "
        f"{os.cpu_count()} CPUs, shared"
    )
    print(
        f"  collector took in      {datagrams / elapsed:>9,.0f} datagrams/s  {samples / elapsed:>9,.0f} flow samples/s"
    )
    print(f"  lost (sequence gaps)   {lost:>9,.0f} datagrams, counted by the collector")
    print(f"  socket drops           {drops:>9,} (kernel, the collector's UDP socket)")
    print(f"  forwarded (-f)         {forwarded:>9,.0f}, the sink received {received_by_sink:,}")
    print(f"  collector CPU          {(cpu1 - cpu0) / elapsed:>9.0%} of one CPU")


if __name__ == "__main__":
    main()
