"""The module context: what a module may ask of the core, and no module reaches the agent."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path
from typing import Any

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.enrichers import Enricher
from hsflowd_py.module import Module
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_sample
from hsflowd_py.sflow.records import ExtendedTimestamp
from hsflowd_py.sflow.samples import FlowSample

MODULES = Path(__file__).resolve().parent.parent / "modules"


def agent(tmp_path: Path) -> Agent:
    return Agent(parse_config("sflow { collector { ip = 127.0.0.1 } }"), auto_path=str(tmp_path / "auto"))


def test_context_acts_on_the_agent(tmp_path: Path) -> None:
    a = agent(tmp_path)
    context = a.context
    context.claim_container_ports([7, 8])
    context.release_container_ports([8])
    assert a.container_ifindexes == {7}
    index = context.allocate_ds_index(b"u" * 16)
    assert index == a.ds_indexes.allocate(b"u" * 16)
    context.add_poller(PollerSpec(3, index, list, "test"))
    assert (3, index) in a.pollers
    context.remove_poller(3, index)
    assert (3, index) not in a.pollers
    entry = context.flow_interface(5, 10, True)
    assert context.flow_interface(5, 10, True) is entry and context.flow_interface(5, 20, True) is not entry
    a.flows.sequences[5] = 41
    context.restart_flow_sequence(5)
    assert 5 not in a.flows.sequences and 5 not in a.flows.interfaces
    assert context.describe(None, context.host_uuid) == a.host.description(None, a.uuid)


class _Idle(Enricher):
    def enrich(self, packet: Any) -> None:
        return None


def test_encoded_flows_number_and_send_samples_given_encoded(tmp_path: Path) -> None:
    """The face of the flow path for a sampler that encodes samples itself: samples given back to back
    sent as one datagram, as they were given; not while an enricher wants the packets."""
    a = agent(tmp_path)
    flows = a.context.encoded_flows()
    assert not flows.direct and flows.room() == 0  # no assembler yet
    sent: list[Any] = []
    a.flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.1"), 0, 1400, sent.extend)
    assert flows.direct
    samples = [FlowSample(0, 5, 10, 10 * n, 0, 5, 0x3FFFFFFF, [ExtendedTimestamp(n)], n) for n in (1, 2)]
    encoded = tuple(encode_sample(s) for s in samples)
    room = flows.room()
    flows.add(encoded)
    assert flows.pending() == 2 and flows.room() == room - sum(map(len, encoded))
    assert flows.send() == room and not flows.pending()
    datagram = decode_datagram(sent[0])
    assert datagram.samples == samples
    assert a.stats["flow_samples"] == 2
    a.flows.set_enrichers([(Module(a.context, a.settings), "idle", _Idle())])
    assert not flows.direct


def module_files() -> list[Path]:
    return sorted(MODULES.rglob("*.py"))


def test_no_module_imports_the_agent_or_another_module() -> None:
    """A module sees the core through its context; what modules share goes through typed keys."""
    assert module_files()
    for path in module_files():
        package = path.relative_to(MODULES).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                depth = len(path.relative_to(MODULES).parts) - 1
                assert node.level <= depth, f"{path} imports from outside its module"
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert name != "hsflowd_py.agent", f"{path} imports the agent"
                parts = name.split(".")
                if parts[:2] == ["hsflowd_py", "modules"] and len(parts) > 2:
                    assert parts[2] == package, f"{path} imports module {parts[2]}"
        assert "self.agent" not in path.read_text(), f"{path} reaches into the agent"
