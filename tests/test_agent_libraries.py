"""What the running agent maps (#19, peak RSS): an agent that only samples packets maps no extension or
library that only rare paths use.  OpenSSL's libcrypto alone, pulled in by ``ssl``, ``hashlib``,
``hmac`` or ``secrets``, is 3.4 MB of resident memory; ``json`` is needed only for status answers and
the bcc build, ``decimal`` nowhere, and shutil (argparse's) imports bz2 and lzma for archives the agent
never makes.  The kernel's list of the process's mappings is the judge; for pure-Python modules, the agent's own
account of its imports (``-X importtime``): the idna codec (``encodings.idna``, ``stringprep``, unicodedata's
tables, ~270 kB resident) is for collector names with other characters than ASCII, none here."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pcap_netns import veth_pair
from procs import start_agent
from test_pcap_e2e import require_sampler, wait_for_log, write_config

pytestmark = pytest.mark.root

UNUSED = ("libssl.so", "libcrypto.so", "libbz2.so", "liblzma.so", "/_ssl.", "/_hashlib.", "/_decimal.", "/_json.")
"""Parts of mapped file names that an agent with ``pcap {}`` alone has no use for."""
UNUSED_MODULES = {"encodings.idna", "stringprep"}


def datagram_twice(collector: socket.socket, timeout: float = 15) -> None:
    """Until a datagram comes twice: both collectors (the address and the name of one listener) resolved."""
    seen: set[bytes] = set()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        datagram = collector.recv(65536)
        if datagram in seen:
            return
        seen.add(datagram)
    raise AssertionError("no datagram reached both collectors")


@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
def test_an_agent_sampling_packets_maps_no_library_it_does_not_use(tmp_path: Path, kind: str) -> None:
    with veth_pair("plib") as v, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(15)
        port = collector.getsockname()[1]
        also = f"collector {{ ip = localhost udpport = {port} }}"
        conf = write_config(tmp_path, port, f"pcap {{ dev = {v.host_dev} sampling = 10 sampler = {kind} }}", extra=also)
        with start_agent(conf, tmp_path / "auto", wrapper=("env", "PYTHONPROFILEIMPORTTIME=1")) as agent:
            require_sampler(agent, v.host_dev, kind)
            wait_for_log(agent, "module pcap started")
            datagram_twice(collector)
            mapped = {line.split()[-1] for line in Path(f"/proc/{agent.p.pid}/maps").read_text().splitlines()}
    imported = {line.rsplit("|", 1)[-1].strip() for line in agent.stderr if line.startswith("import time:")}
    assert "asyncio" in imported  # the agent's imports are there to see
    assert imported & UNUSED_MODULES == set()
    assert any("libpython" in name or "python3" in name for name in mapped)  # the file names are there to see
    assert [name for name in mapped if any(part in name for part in UNUSED)] == []
