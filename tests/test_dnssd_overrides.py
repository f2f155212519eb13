"""What the agent makes of discovered settings: they override the file's, per key for sampling.<speed>."""

from __future__ import annotations

import time
from pathlib import Path

from hsflowd_py.agent import Agent, Discovered
from hsflowd_py.config import parse_config
from hsflowd_py.modules.dnssd.txt import parse_txt
from hsflowd_py.pollers import PollerSpec

CONF = """sflow {
  sampling = 400
  sampling.1G = 1000
  sampling.10G = 5000
  polling = 300
  headerBytes = 128
  collector { ip = 127.0.0.1 udpport = 9 }
  dns-sd { domain = .example.test }
}"""


def test_txt_overrides_the_file_and_the_auto_file_shows_it(tmp_path: Path) -> None:
    auto = tmp_path / "hsflowd.auto"
    agent = Agent(parse_config(CONF), auto_path=str(auto))
    agent.apply_settings()
    host = agent.add_poller(PollerSpec(2, 1, list, "host"))
    assert host.next_due - time.monotonic() > 0.5  # first phase somewhere in 1..300 s
    assert "collector=127.0.0.1 9\n" in auto.read_text()

    txt = parse_txt([b"sampling=10", b"sampling.10G=100", b"polling=2", b"headerBytes=64"])
    agent.set_discovered(Discovered(collectors=(("::1", 6343), ("127.0.0.1", 6344)), overrides=txt.overrides))

    s = agent.settings
    assert (s.sampling, s.polling, s.header_bytes) == (10, 2, 64)
    assert s.sampling_by_speed == {1_000_000_000: 1000, 10_000_000_000: 100}  # merged, the file's 1G stays
    assert agent.file_settings.sampling_by_speed == {1_000_000_000: 1000, 10_000_000_000: 5000}
    assert host.next_due - time.monotonic() <= 2  # the new interval applies now, not after 300 s
    assert [r.label for r in agent.receivers.receivers] == ["[::1]:6343", "127.0.0.1:6344"]
    text = auto.read_text()
    for line in ("sampling=10", "polling=2", "header=64", "collector=::1 6343", "collector=127.0.0.1 6344"):
        assert line + "\n" in text
    assert "collector=127.0.0.1 9\n" not in text

    agent.set_discovered(Discovered(collectors=(), overrides=()))  # no SRV record: nobody to send to
    assert agent.receivers.receivers == [] and "collector=" not in auto.read_text()
    assert agent.settings.sampling == 400
    agent.receivers.close()
