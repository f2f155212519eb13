"""dropmon { } without what it needs, its BPF object as built, its datagrams: no namespaces, no traffic.

Without CAP_BPF/CAP_SYS_ADMIN the kernel refuses the program: the module says so once and the agent
runs on, sending its host counters.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import ROOT, free_udp_port, json_datagrams, start_agent, start_collector

from hsflowd_py.modules import dropmon
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_sample
from hsflowd_py.sflow.samples import CounterSample, DiscardSample, FlowSample


def test_the_shipped_object_is_a_fresh_build_of_the_source(tmp_path: Path) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (building the eBPF objects)")
    build = [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)]
    subprocess.run(build, cwd=ROOT, check=True, capture_output=True)
    for name in ("dropmon.bpfel.o", "dropmon.bpfeb.o"):
        built = tmp_path / "hsflowd_py/modules/dropmon" / name
        assert built.read_bytes() == dropmon.OBJECT.with_name(name).read_bytes(), f"{name} is stale"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_without_the_permission_it_says_so_once_and_the_agent_runs_on(tmp_path: Path) -> None:
    port = free_udp_port()
    collector = start_collector(port, "-j")
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{\n polling = 1\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n dropmon {{ }}\n}}\n")
    no_bpf = ("setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--inh-caps", "-bpf,-sys_admin,-perfmon")
    agent = start_agent(conf, tmp_path / "hsflowd.auto", wrapper=no_bpf)
    try:
        hosts = [d for d in json_datagrams(collector, 6) if any(s["sourceId"] == "2:1" for s in d["samples"])]
        time.sleep(0.5)
    finally:
        agent.stop()
        collector.stop()
    said = [line for line in agent.stderr if "dropmon:" in line]
    assert len(said) == 1, said
    assert "not monitoring drops (the agent runs on without it): loading dropmon.bpfe" in said[0]
    assert "Operation not permitted" in said[0]
    assert hosts, "".join(agent.stderr)[-2000:]


def test_discard_samples_travel_in_datagrams_of_their_own() -> None:
    """Flow, discard, discard, counter, flow: three datagrams, the discard samples alone in the middle
    one, sequence numbers unbroken, each sample in the order it came."""
    sent: list[bytes] = []
    a = DatagramAssembler(ipaddress.ip_address("192.0.2.2"), 100000, 1400, sent.extend)
    header = [rec.SampledHeader(1, 68, 4, b"\xab" * 64)]
    a.add(encode_sample(FlowSample(0, 8, 10, 10, 0, 8, 0, header, 1)), 1)
    a.add(encode_sample(DiscardSample(0, 0, 0, 8, 0, 3, header, 1)), 2, discards=True)
    a.add(encode_sample(DiscardSample(0, 0, 0, 8, 0, 3, header, 2)), 3, discards=True)
    a.add(encode_sample(CounterSample(0, 8, [], 1)), 4)
    a.add(encode_sample(FlowSample(0, 8, 10, 20, 0, 8, 0, header, 2)), 5)
    a.flush(6)
    decoded = [decode_datagram(d) for d in sent]
    kinds = [[type(s).__name__ for s in d.samples] for d in decoded]
    assert kinds == [["FlowSample"], ["DiscardSample", "DiscardSample"], ["CounterSample", "FlowSample"]]
    assert [d.sequence for d in decoded] == [1, 2, 3]


def test_the_module_runs_only_while_its_block_asks_for_drops() -> None:
    """``start = off`` or ``sw = off`` keeps it stopped: the core's reload starts or stops it when they change."""
    from hsflowd_py.config import parse_config

    def wanted(block: str) -> bool:
        return dropmon.Dropmon.wanted(parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} {block} }}"))

    assert [wanted(b) for b in ("dropmon { }", "dropmon { start = on sw = on }", "")] == [True, True, False]
    assert [wanted(b) for b in ("dropmon { start = off }", "dropmon { sw = off }")] == [False, False]
