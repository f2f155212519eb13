"""The agent's settings as frozen dataclasses, one per hsflowd.conf block.

Defaults are the established agent's (REFERENCE.md section 4).  Each field that
appears in the file declares its key and value type right here (see
``schema.py``); fields marked *addition* exist only in hsflowd-py.  Settings are
frozen because several modules read them concurrently and a reload replaces
the whole object rather than mutating it.

``REQUIRES_ONE_OF`` names the keys of which a block needs at least one; the
parser enforces it so that a block that cannot do anything is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from uuid import UUID

from hsflowd_py.modules.dropmon.settings import DropmonSettings

from . import values as v
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
class DnsSdSettings:
    """Collectors and settings from DNS SRV/TXT records (REFERENCE.md section 5).

    ``domain`` keeps its leading dot; empty means the resolver's own search
    domain, as in the established agent.  ``server``, ``port`` and
    ``first_query_max`` are additions so tests can use a local DNS server and
    need not wait up to 30 s for the first query.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    domain: str = field(default="", metadata=conf_key("domain", v.DOMAIN, aliases=("DNSSD_domain",)))
    server: str | None = field(default=None, metadata=conf_key("server", v.IP))
    port: int = field(default=53, metadata=conf_key("port", v.PORT))
    first_query_max: float = field(default=30.0, metadata=conf_key("firstQuery", v.seconds(3600)))


@dataclass(frozen=True)
class PcapSettings:
    """Packet sampling on the interfaces selected by name, name pattern and/or link speed.

    ``dev_pattern`` is matched with ``re.search`` (unanchored, like the
    established agent's regexec).  ``speed`` is an inclusive (low, high) range in
    bits/s, high None meaning unbounded.  ``sampler`` (addition) picks the
    kernel sampler: ``auto`` prefers eBPF and falls back to classic BPF.
    ``sampling = 0`` turns sampling off on the chosen interfaces.  ``dynamic = on`` makes the
    block one that, in the established agent, only other modules' requests open (none here
    asks), so it samples nothing.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("dev", "dev.pattern", "speed")

    dev: str | None = field(default=None, metadata=conf_key("dev", v.IFNAME))
    dev_pattern: str | None = field(default=None, metadata=conf_key("dev.pattern", v.REGEX))
    speed: tuple[int, int | None] | None = field(default=None, metadata=conf_key("speed", v.SPEED_RANGE))
    promisc: bool = field(default=False, metadata=conf_key("promisc", v.BOOL))
    sampling: int | None = field(default=None, metadata=conf_key("sampling", v.RATE))
    sampler: str = field(default="auto", metadata=conf_key("sampler", v.choice("auto", "ebpf", "cbpf")))
    dynamic: bool | None = field(default=None, metadata=conf_key("dynamic", v.BOOL))


@dataclass(frozen=True)
class TcpSettings:
    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    tunnel: bool = field(default=False, metadata=conf_key("tunnel", v.BOOL))
    udp: bool = field(default=False, metadata=conf_key("udp", v.BOOL))
    dump: bool = field(default=False, metadata=conf_key("dump", v.BOOL))


@dataclass(frozen=True)
class DockerSettings:
    """``socket`` (addition) lets tests and rootless engines point elsewhere.

    ``refreshVMs``/``forgetVMs`` are range-checked as the established agent does and otherwise
    unused: the engine's event stream tells this agent of containers at once, and data-source
    indexes are forgotten after the global ``forgetVMs``.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    hostname: bool = field(default=False, metadata=conf_key("hostname", v.BOOL))
    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    refresh_vms: int | None = field(default=None, metadata=conf_key("refreshVMs", v.integer(60, 3600)))
    forget_vms: int | None = field(default=None, metadata=conf_key("forgetVMs", v.integer(60, v.UINT32)))
    socket: str = field(default="/var/run/docker.sock", metadata=conf_key("socket", v.TEXT))


@dataclass(frozen=True)
class SystemdSettings:
    """``refresh_vms`` None means the global ``refreshVMs``; ``cgroup_root`` (addition) is for test roots.

    ``cgroup_procs``/``cgroup_acct`` (the established agent's cgroup v1 path formats) are accepted
    and unused: the cgroup files are found from each unit's ControlGroup property.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    drop_priv: bool = field(default=True, metadata=conf_key("dropPriv", v.BOOL))
    refresh_vms: int | None = field(default=None, metadata=conf_key("refreshVMs", v.integer(10, 3600)))
    cgroup_root: str = field(default="/sys/fs/cgroup", metadata=conf_key("cgroupRoot", v.TEXT))
    cgroup_procs: str | None = field(default=None, metadata=conf_key("cgroup_procs", v.TEXT))
    cgroup_acct: str | None = field(default=None, metadata=conf_key("cgroup_acct", v.TEXT))


@dataclass(frozen=True)
class Settings:
    """Everything in ``sflow { ... }``; ``source`` is the file it came from.

    ``sampling_bps_ratio`` None means "not set", which differs from 0 (use
    ``sampling`` on every link; see REFERENCE.md section 4).  ``run_as_user``
    and ``run_as_group`` (additions, keys ``user``/``group``) are what the agent
    drops to after opening its privileged sockets.  ``refresh_adaptors`` is
    accepted so the established agent's files load, and does nothing: its full
    re-read of the interfaces is what every ``check_adaptors`` check does here.

    Ranges are the established agent's (it refuses a file with a value outside them, and so
    does this parser).  Legacy keys it still reads: ``packetSamplingRate`` and
    ``counterPollingInterval`` (spellings of ``sampling`` and ``polling``); ``DNSSD = on|off`` and
    ``DNSSD_domain`` (folded into ``dns_sd`` by the parser); ``loopback``, ``samplingDirection``
    and ``modules``, checked and without effect, as they are there.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("collector", "dns-sd")

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
    dnssd: bool | None = field(default=None, metadata=conf_key("DNSSD", v.BOOL))
    dnssd_domain: str | None = field(default=None, metadata=conf_key("DNSSD_domain", v.DOMAIN))
    run_as_user: str = field(default="nobody", metadata=conf_key("user", v.TEXT))
    run_as_group: str | None = field(default=None, metadata=conf_key("group", v.TEXT))
    collectors: tuple[CollectorSettings, ...] = field(
        default_factory=tuple, metadata=conf_block("collector", CollectorSettings, repeat=True)
    )
    dns_sd: DnsSdSettings | None = field(default=None, metadata=conf_block("dns-sd", DnsSdSettings))
    pcap: tuple[PcapSettings, ...] = field(
        default_factory=tuple, metadata=conf_block("pcap", PcapSettings, repeat=True)
    )
    tcp: TcpSettings | None = field(default=None, metadata=conf_block("tcp", TcpSettings))
    docker: DockerSettings | None = field(default=None, metadata=conf_block("docker", DockerSettings))
    systemd: SystemdSettings | None = field(default=None, metadata=conf_block("systemd", SystemdSettings))
    dropmon: DropmonSettings | None = field(default=None, metadata=conf_block("dropmon", DropmonSettings))
    source: str = "<string>"
    warnings: tuple[str, ...] = ()
    """What the parser skipped (unsupported blocks and keys, when told to skip them), one line each."""

    def packet_sampling_configured(self) -> bool:
        return bool(self.pcap)

    def sub_agent(self) -> int:
        """The datagram sub-agent id: collectors tell packet-sampling agents apart by it (REFERENCE.md 1)."""
        return self.sub_agent_id if self.packet_sampling_configured() else self.sub_agent_id + 1

    def describe(self) -> list[str]:
        """The effective settings, defaults included, as hsflowd.conf text that parses back to them."""
        return [
            f"# effective settings from {self.source}",
            *(f"# warning: {warning}" for warning in self.warnings),
            f"# datagram sub-agent id: {self.sub_agent()}",
            *render(self, "sflow"),
        ]
