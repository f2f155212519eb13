"""The eBPF sampler's BPF object (built by setup.py) and its loaders: libbpf first, bcc second.

The object is checked against a fresh build of the source and against the compiler's own
account of the sample record (DWARF); the loaders run for real on a veth pair: the libbpf
one in a process where bcc cannot be imported and, in a mount namespace of its own, the
kernel's BTF cannot be read either.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from netns import VethNamespace
from pcap_netns import veth_pair

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT
from hsflowd_py.modules.pcap import ebpf, ebpf_core, wire
from hsflowd_py.modules.pcap.sampler import SamplerError

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
ECHOES = 20

SAMPLE_BURST = """
import asyncio, json, subprocess, sys
from pathlib import Path
dev, ns_ip, tests, block_bcc, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
if block_bcc:
    sys.modules["bcc"] = None  # any import of bcc in this process fails
sys.path.insert(0, tests)
from test_pcap_samplers import Sink, packets, tap_of
from hsflowd_py.modules.pcap.ebpf import EbpfSampler

async def main():
    sink = Sink()
    sampler = await EbpfSampler.create(sink, Path("/"))
    tap = tap_of(None, "ebpf", 1, header_bytes=64, dev=dev)
    sampler.open(tap)
    before = packets(dev)
    subprocess.run(["ping", "-q", "-c", count, "-i", "0.01", ns_ip], check=True, capture_output=True)
    await asyncio.sleep(0.3)
    counted = packets(dev) - before
    sampler.stop()
    print(json.dumps({
        "loader": sampler.loaded.loader,
        "bcc_imported": sys.modules.get("bcc") is not None,
        "kernel_btf_visible": Path("/sys/kernel/btf/vmlinux").exists(),
        "ifindex": tap.ifindex,
        "counted": counted,
        "samples": [[s.ds_index, s.rate, s.sample_pool, s.direction, s.header.hex()] for s in sink.samples],
    }))

asyncio.run(main())
"""


def test_the_shipped_object_is_a_fresh_build_of_the_source(tmp_path: Path) -> None:
    """What the agent loads is what setup.py builds from today's source (a stale object would test old code),
    and its scratch sample is what wire.py says: the head, twice HEADER_MAX (room the verifier needs) and
    the timestamp."""
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (scripts/debian-packages.txt: building the CO-RE eBPF object)")
    out = tmp_path / "lib"
    build = [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)]
    subprocess.run(build, cwd=REPO, check=True, capture_output=True)
    built = out / "hsflowd_py/modules/pcap"
    for name in ("sampler_core.bpfel.o", "sampler_core.bpfeb.o"):
        assert (built / name).read_bytes() == ebpf_core.OBJECT.with_name(name).read_bytes(), f"{name} is stale"
    dwarf = subprocess.run(
        ["llvm-dwarfdump", "--name=wire", str(ebpf_core.OBJECT)], check=True, capture_output=True, text=True
    ).stdout
    size = re.search(r"DW_AT_byte_size\s+\((0x[0-9a-f]+)\)", dwarf)
    assert size is not None, dwarf
    assert int(size.group(1), 16) == wire.HEAD_BYTES + 2 * ebpf.HEADER_MAX + wire.TIMESTAMP_BYTES


def burst(v: VethNamespace, env: dict[str, str], block_bcc: bool, wrapper: tuple[str, ...] = ()) -> dict:
    """Run SAMPLE_BURST (its own process, like the agent): ECHOES pings sampled 1-in-1 on the root end."""
    args = [*wrapper, sys.executable, "-c", SAMPLE_BURST, v.host_dev, v.ns_ip, str(TESTS)]
    args += ["1" if block_bcc else "0", str(ECHOES)]
    out = subprocess.run(args, env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def check_echoes(v: VethNamespace, result: dict) -> None:
    """Every request out, every reply in, each sample's pool the running count of packets, the last one
    the interface's own count."""
    samples = result["samples"]
    assert all(ds == result["ifindex"] and rate == 1 for ds, rate, *_ in samples)
    pools = [pool for _, _, pool, _, _ in samples]
    assert pools == sorted(pools)
    assert abs(pools[-1] - result["counted"]) <= 2, (pools[-1], result["counted"])
    ips = {socket.inet_aton(v.host_ip): DIRECTION_OUT, socket.inet_aton(v.ns_ip): DIRECTION_IN}
    echoes = [(d, bytes.fromhex(h)) for *_, d, h in samples if bytes.fromhex(h)[12:14] == b"\x08\x00"]
    echoes = [(d, h) for d, h in echoes if h[23] == 1]
    assert len(echoes) == 2 * ECHOES
    for direction, header in echoes:
        assert direction == ips[header[26:30]]
    assert sum(d == DIRECTION_OUT for d, _ in echoes) == ECHOES


@pytest.mark.root
def test_libbpf_loads_without_bcc_or_kernel_btf(tmp_path: Path) -> None:
    """The object needs neither bcc (not importable in the process, no kernel headers for its child either)
    nor the kernel's BTF (hidden under an empty tmpfs in a mount namespace of the process's own)."""
    no_headers = tmp_path / "no-kernel-headers"
    no_headers.mkdir()
    hide_btf = ("unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys/kernel/btf 2>/dev/null; exec "$@"', "sh")
    with veth_pair("pccl", ipv6=False) as v:
        result = burst(v, {"BCC_KERNEL_SOURCE": str(no_headers)}, block_bcc=True, wrapper=hide_btf)
        check_echoes(v, result)
    assert result["loader"] == "libbpf"
    assert not result["bcc_imported"] and not result["kernel_btf_visible"]


@pytest.mark.root
def test_bcc_loader_samples_the_same(tmp_path: Path) -> None:
    """The fallback: the same program compiled by bcc (HSFLOWD_PY_EBPF_LOADER=bcc) samples the same burst."""
    if importlib.util.find_spec("bcc") is None:
        pytest.skip("python3-bpfcc is not installed")
    with veth_pair("pccb", ipv6=False) as v:
        result = burst(v, {"HSFLOWD_PY_EBPF_LOADER": "bcc"}, block_bcc=False)
        check_echoes(v, result)
    assert result["loader"] == "bcc"


def broken_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / ebpf_core.OBJECT.name
    path.write_bytes(b"not an ELF object")
    monkeypatch.setattr(ebpf_core, "OBJECT", path)
    monkeypatch.delenv("HSFLOWD_PY_EBPF_LOADER", raising=False)


def loader_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hsflowd.pcap"]


@pytest.mark.root
def test_fallback_order_is_said_when_no_loader_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """libbpf refuses the object, bcc has no kernel headers: the error, which the pcap module logs as it
    takes classic BPF, gives each loader's reason in the order they were tried; nothing else is logged."""
    broken_object(tmp_path, monkeypatch)
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(tmp_path))
    caplog.set_level(logging.INFO, "hsflowd.pcap")
    with pytest.raises(SamplerError) as e:
        asyncio.run(ebpf.load())
    assert re.match(rf"libbpf: opening {re.escape(str(ebpf_core.OBJECT))}: .+; bcc: .+kconfig\.h", str(e.value))
    assert loader_lines(caplog) == []


@pytest.mark.root
def test_bcc_takes_over_when_libbpf_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One warning says that bcc loaded the sampler and why libbpf did not."""
    if importlib.util.find_spec("bcc") is None:
        pytest.skip("python3-bpfcc is not installed")
    broken_object(tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, "hsflowd.pcap")
    loaded = asyncio.run(ebpf.load())
    loaded.close()
    assert loaded.loader == "bcc"
    (line,) = loader_lines(caplog)
    assert line.startswith(f"pcap: the eBPF sampler is compiled and loaded by bcc (libbpf: opening {ebpf_core.OBJECT}:")


REFUSED = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 16);
} samples SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 16);
} datagrams SEC(".maps");

SEC("tc") int hsflowd_ingress(struct __sk_buff *skb)
{
    return *(int *)(long)skb->data;  /* no bounds check: the verifier refuses it */
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.root
def test_a_program_the_verifier_refuses_is_reported_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (scripts/debian-packages.txt: building the CO-RE eBPF object)")
    source = tmp_path / "refused.bpf.c"
    source.write_text(REFUSED)
    obj = tmp_path / ebpf_core.OBJECT.name
    multiarch = [f"-I/usr/include/{m}"] if (m := sysconfig.get_config_var("MULTIARCH")) else []
    subprocess.run(["clang", "-target", "bpf", "-O2", "-g", *multiarch, "-c", str(source), "-o", str(obj)], check=True)
    monkeypatch.setattr(ebpf_core, "OBJECT", obj)
    with pytest.raises(SamplerError) as e:
        ebpf_core.load(1 << 16, 1 << 16)
    message = str(e.value)
    assert message.startswith(f"loading {obj.name}: Permission denied"), message
    assert "invalid access to packet" in message, message
