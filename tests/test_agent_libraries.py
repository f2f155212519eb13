"""What the running agent maps (#19, peak RSS): an agent that only samples packets maps no extension or
library that only rare paths use.  OpenSSL's libcrypto alone, pulled in by ``ssl``, ``hashlib``,
``hmac`` or ``secrets``, is 3.4 MB of resident memory; ``json`` is needed only for status answers and
the bcc build, ``decimal`` nowhere, and shutil (argparse's) imports bz2 and lzma for archives the agent
never makes.  The kernel's list of the process's mappings is the judge."""

from __future__ import annotations

from pathlib import Path

import pytest
from pcap_netns import veth_pair
from procs import free_udp_port, start_agent
from test_pcap_e2e import require_sampler, wait_for_log, write_config

pytestmark = pytest.mark.root

UNUSED = ("libssl.so", "libcrypto.so", "libbz2.so", "liblzma.so", "/_ssl.", "/_hashlib.", "/_decimal.", "/_json.")
"""Parts of mapped file names that an agent with ``pcap {}`` alone has no use for."""


@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
def test_an_agent_sampling_packets_maps_no_library_it_does_not_use(tmp_path: Path, kind: str) -> None:
    with veth_pair("plib") as v:
        conf = write_config(tmp_path, free_udp_port(), f"pcap {{ dev = {v.host_dev} sampling = 10 sampler = {kind} }}")
        with start_agent(conf, tmp_path / "auto") as agent:
            require_sampler(agent, v.host_dev, kind)
            wait_for_log(agent, "module pcap started")
            mapped = {line.split()[-1] for line in Path(f"/proc/{agent.p.pid}/maps").read_text().splitlines()}
    assert any("libpython" in name or "python3" in name for name in mapped)  # the file names are there to see
    assert [name for name in mapped if any(part in name for part in UNUSED)] == []
