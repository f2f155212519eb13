"""/proc/cpuinfo across architectures."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cpuinfo import CpuInfo, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu MHz\t\t: 2599.998
flags\t\t: fpu vme de pse
power management:

processor\t: 1
vendor_id\t: AuthenticAMD
cpu MHz\t\t: 1800.000
power management:

"""

ARM64 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41

processor\t: 1
BogoMIPS\t: 50.00

processor\t: 2
BogoMIPS\t: 50.00

processor\t: 3
BogoMIPS\t: 50.00
"""

PPC64 = """processor\t: 0
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2900.000000MHz
revision\t: 2.2 (pvr 004e 1202)

processor\t: 1
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2900.000000MHz

timebase\t: 512000000
platform\t: pSeries
"""

S390X = """vendor_id       : IBM/S390
# processors    : 2
bogomips per cpu: 3241.00
facilities      : 0 1 2 3 4 6 7 8 9 10
processor 0: version = FF,  identification = 0133E8,  machine = 2964
processor 1: version = FF,  identification = 0133E8,  machine = 2964
cpu number      : 0
cpu MHz dynamic : 5000
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (X86, CpuInfo(2, 2599.998)),  # the first CPU's clock
        (ARM64, CpuInfo(4, None)),
        (PPC64, CpuInfo(2, 2900.0)),
        (S390X, CpuInfo(2, None)),
        ("", CpuInfo(0, None)),
    ],
)
def test_parse_cpuinfo(text: str, expected: CpuInfo) -> None:
    assert parse_cpuinfo(text) == expected


def test_unparseable_clock_names_its_line() -> None:
    with pytest.raises(ReaderError) as err:
        parse_cpuinfo("processor\t: 0\ncpu MHz\t\t: fast\n")
    assert err.value.line == 2
