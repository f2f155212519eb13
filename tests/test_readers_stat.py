"""/proc/stat parsing: columns by kernel version, ticks to milliseconds."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.stat import CPU_STATES, parse_stat

MODERN = """cpu  7620 0 1876 184458 441 0 80 6 0 0
cpu0 3000 0 900 92000 200 0 40 3 0 0
cpu1 4620 0 976 92458 241 0 40 3 0 0
intr 214591 0 9 0 0 0
ctxt 436989
btime 1700000000
processes 9388
procs_running 2
procs_blocked 0
softirq 118040 0 16069 1 5003 0 0 1 62046 0 34920
"""


def test_modern_kernel_all_ten_columns_in_ms() -> None:
    stat = parse_stat(MODERN, clock_ticks=100)
    assert stat.cpu_ms == {
        "user": 76200, "nice": 0, "system": 18760, "idle": 1844580, "iowait": 4410,
        "irq": 0, "softirq": 800, "steal": 60, "guest": 0, "guest_nice": 0,
    }  # fmt: skip
    assert (stat.interrupts, stat.contexts, stat.procs_running) == (214591, 436989, 2)


@pytest.mark.parametrize(
    "cpu_line, given",
    [
        ("cpu  100 200 300 400", 4),  # 2.4
        ("cpu  100 200 300 400 500 600 700", 7),  # 2.6.0: iowait, irq, softirq
        ("cpu  100 200 300 400 500 600 700 800", 8),  # 2.6.11: steal
        ("cpu  100 200 300 400 500 600 700 800 900", 9),  # 2.6.24: guest
        ("cpu  100 200 300 400 500 600 700 800 900 1000 1100", 10),  # a future column is ignored
    ],
)
def test_columns_an_older_kernel_lacks_read_as_zero(cpu_line: str, given: int) -> None:
    stat = parse_stat(cpu_line + "\nctxt 5\n", clock_ticks=100)
    expected = [(i + 1) * 1000 if i < given else 0 for i in range(len(CPU_STATES))]
    assert list(stat.cpu_ms.values()) == expected
    assert (stat.interrupts, stat.contexts, stat.procs_running) == (0, 5, 0)


@pytest.mark.parametrize(
    "clock_ticks, jiffies, ms", [(100, 7620, 76200), (250, 7620, 30480), (1000, 7, 7), (300, 1, 3)]
)
def test_ticks_to_ms(clock_ticks: int, jiffies: int, ms: int) -> None:
    assert parse_stat(f"cpu  {jiffies} 0 0 0\n", clock_ticks).cpu_ms["user"] == ms


@pytest.mark.parametrize(
    "text, line",
    [
        ("cpu0 1 2 3 4\nintr 5\n", None),  # no aggregate cpu line
        ("cpu  1 2 x 4\n", 1),
        ("cpu  1 2 3 4\nintr\n", 2),
        ("cpu  1 2 3 4\nintr 1\nctxt many\n", 3),
    ],
)
def test_malformed(text: str, line: int | None) -> None:
    with pytest.raises(ReaderError) as err:
        parse_stat(text)
    assert err.value.line == line


def test_lines_not_needed_are_ignored_whatever_their_shape() -> None:
    assert parse_stat("cpu  1 2 3 4\nsoftirq x y\nweird\n\n").contexts == 0
