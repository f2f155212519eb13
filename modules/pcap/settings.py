"""``pcap { }``: which interfaces are sampled, and how (see ``hsflowd_py/config/blocks.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@module_block("pcap", repeat=True, unsupported=("vport",), samples_packets=True)
@dataclass(frozen=True)
class PcapSettings:
    """Packet sampling on the interfaces selected by name, name pattern and/or link speed.

    ``dev_pattern`` is matched with ``re.search`` (unanchored, like the
    established agent's regexec).  ``speed`` is an inclusive (low, high) range in
    bits/s, high None meaning unbounded.  ``sampler`` (addition) picks the
    kernel sampler: ``auto`` prefers eBPF and falls back to classic BPF.
    ``sampling = 0`` turns sampling off on the chosen interfaces.  ``dynamic = on`` makes the
    block one that only other modules' requests open (``k8s { }``'s pod veths; see ``interfaces.py``).
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("dev", "dev.pattern", "speed")

    dev: str | None = field(default=None, metadata=conf_key("dev", v.IFNAME))
    dev_pattern: str | None = field(default=None, metadata=conf_key("dev.pattern", v.REGEX))
    speed: tuple[int, int | None] | None = field(default=None, metadata=conf_key("speed", v.SPEED_RANGE))
    promisc: bool = field(default=False, metadata=conf_key("promisc", v.BOOL))
    sampling: int | None = field(default=None, metadata=conf_key("sampling", v.RATE))
    sampler: str = field(default="auto", metadata=conf_key("sampler", v.choice("auto", "ebpf", "cbpf")))
    dynamic: bool | None = field(default=None, metadata=conf_key("dynamic", v.BOOL))
