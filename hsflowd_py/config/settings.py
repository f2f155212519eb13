"""The core's settings as frozen dataclasses, one per hsflowd.conf block (modules declare theirs).

Defaults are the established agent's (REFERENCE.md section 4).  Each field that
appears in the file declares its key and value type right here (see
``schema.py``); fields marked *addition* exist only in hsflowd-py.  Settings are
frozen because several modules read them concurrently and a reload replaces
the whole object rather than mutating it.

``REQUIRES_ONE_OF`` names the keys of which a block needs at least one; the
parser enforces it so that a block that cannot do anything is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from uuid import UUID

from . import values as v
from .blocks import block_for_attr, known_blocks
from .schema import conf_block, conf_key, render
from .values import AgentCidr


@dataclass(frozen=True)
class CollectorSettings:
    """Where datagrams go.  ``ip`` may also be a host name, resolved by the sender."""

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("ip",)

    ip: str = field(metadata=conf_key("ip", v.HOST))
    udpport: int = field(default=6343, metadata=conf_key("udpport", v.PORT))
    dev: str | None = field(default=None, metadata=conf_key("dev", v.IFNAME))


@dataclass(frozen=True)
class Settings:
    """Everything in ``sflow { ... }``; ``source`` is the file it came from.

    ``sampling_bps_ratio`` None means "not set", which differs from 0 (use
    ``sampling`` on every link; see REFERENCE.md section 4).  ``run_as_user``
    and ``run_as_group`` (additions, keys ``user``/``group``) are what the agent
    drops to after opening its privileged sockets.  ``check_adaptors``: how often
    the interfaces are checked, read only when the kernel announced a link change since;
    ``refresh_adaptors``: how often they are read regardless (``netlink.LinkChanges``).

    Ranges are the established agent's (it refuses a file with a value outside them, and so
    does this parser).  Legacy keys it still reads: ``packetSamplingRate`` and
    ``counterPollingInterval`` (spellings of ``sampling`` and ``polling``); ``DNSSD = on|off`` and
    ``DNSSD_domain`` (declared and folded into ``dns-sd {}`` by that module); ``loopback``,
    ``samplingDirection`` and ``modules``, checked and without effect, as they are there.

    Only the core's keys are fields here.  Each module's block (``pcap {}``, ``docker {}``...) is
    declared in the module's own folder (``blocks.py``) and kept in ``blocks`` by its ``attr``, only
    when the file has it; ``settings.pcap`` reads it, or the block's absent value (None, or ``()``
    for a repeated block).
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("collector",)
    """With the blocks declared ``supplies_collectors`` (``dns-sd``): the parser adds them."""

    sampling: int = field(default=400, metadata=conf_key("sampling", v.RATE, aliases=("packetSamplingRate",)))
    sampling_by_speed: dict[int, int] = field(
        default_factory=dict, metadata=conf_key("sampling", v.RATE, suffix=v.SPEED)
    )
    sampling_by_application: dict[str, int] = field(
        default_factory=dict, metadata=conf_key("sampling", v.RATE, suffix=v.APPLICATION)
    )
    sampling_bps_ratio: int | None = field(default=None, metadata=conf_key("sampling.bps_ratio", v.RATE))
    polling: int = field(default=30, metadata=conf_key("polling", v.POLLING, aliases=("counterPollingInterval",)))
    polling_by_application: dict[str, int] = field(
        default_factory=dict, metadata=conf_key("polling", v.POLLING, suffix=v.APPLICATION)
    )
    agent_ip: str | None = field(default=None, metadata=conf_key("agentIP", v.IP))
    agent_dev: str | None = field(default=None, metadata=conf_key("agent", v.IFNAME))
    agent_cidrs: tuple[AgentCidr, ...] = field(
        default_factory=tuple, metadata=conf_key("agent.cidr", v.CIDR, repeat=True)
    )
    header_bytes: int = field(default=128, metadata=conf_key("headerBytes", v.integer(0, 256)))
    datagram_bytes: int = field(default=1400, metadata=conf_key("datagramBytes", v.integer(200, 8192)))
    sub_agent_id: int = field(default=100000, metadata=conf_key("subAgentId", v.integer(0, 199_999)))
    uuid: UUID | None = field(default=None, metadata=conf_key("uuid", v.UUID))
    refresh_adaptors: int = field(default=180, metadata=conf_key("refreshAdaptors", v.integer(60, 3600)))
    check_adaptors: int = field(default=10, metadata=conf_key("checkAdaptors", v.integer(1, 3600)))
    refresh_vms: int = field(default=60, metadata=conf_key("refreshVMs", v.integer(60, 3600)))
    forget_vms: int = field(default=180, metadata=conf_key("forgetVMs", v.integer(60, v.UINT32)))
    loopback: bool | None = field(default=None, metadata=conf_key("loopback", v.BOOL))
    sampling_direction: str | None = field(default=None, metadata=conf_key("samplingDirection", v.DIRECTION))
    modules: str | None = field(default=None, metadata=conf_key("modules", v.TEXT))
    run_as_user: str = field(default="nobody", metadata=conf_key("user", v.TEXT))
    run_as_group: str | None = field(default=None, metadata=conf_key("group", v.TEXT))
    collectors: tuple[CollectorSettings, ...] = field(
        default_factory=tuple, metadata=conf_block("collector", CollectorSettings, repeat=True)
    )
    blocks: Mapping[str, Any] = field(default_factory=dict)
    """The modules' blocks present in the file, by their declared ``attr``."""
    source: str = "<string>"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What the parser skipped (unsupported blocks and keys, when told to skip them) and the keys it
    accepted without effect, one line each: about the file, not the settings, so not compared."""

    def __getattr__(self, name: str) -> Any:
        """A module's block by its ``attr`` (``settings.pcap``); only for names no field has."""
        block = None if name.startswith("_") else block_for_attr(name)
        if block is None:
            raise AttributeError(f"{type(self).__name__!r} has no setting or module block {name!r}")
        return self.__dict__.get("blocks", {}).get(name, block.absent())

    def with_block(self, attr: str, value: Any) -> Settings:
        """These settings with a module's block replaced (as a reload would bring it)."""
        return replace(self, blocks={**self.blocks, attr: value})

    def packet_sampling_configured(self) -> bool:
        return any(block.samples_packets and bool(self.blocks.get(block.attr)) for block in known_blocks())

    def sub_agent(self) -> int:
        """The datagram sub-agent id: collectors tell packet-sampling agents apart by it (REFERENCE.md 1)."""
        return self.sub_agent_id if self.packet_sampling_configured() else self.sub_agent_id + 1

    def describe(self) -> list[str]:
        """The effective settings, defaults included, as hsflowd.conf text that parses back to them."""
        return [
            f"# effective settings from {self.source}",
            *(f"# warning: {warning}" for warning in self.warnings),
            f"# datagram sub-agent id: {self.sub_agent()}",
            *render(self, "sflow", ((b, self.blocks[b.attr]) for b in known_blocks() if b.attr in self.blocks)),
        ]
