"""/proc/loadavg and /proc/uptime parsing."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.loadavg import LoadAvg, parse_loadavg
from hsflowd_py.readers.uptime import parse_uptime


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0.15 0.23 0.15 1/88 1234\n", LoadAvg(0.15, 0.23, 0.15, 1, 88)),
        ("12.00 8.50 4.25 17/12345 99999", LoadAvg(12.0, 8.5, 4.25, 17, 12345)),
    ],
)
def test_parse_loadavg(text: str, expected: LoadAvg) -> None:
    assert parse_loadavg(text) == expected


@pytest.mark.parametrize("text", ["", "\n", "0.1 0.2", "0.1 0.2 0.3 x/4 5", "a b c 1/2 3", "0.1 0.2 0.3 4 5"])
def test_malformed_loadavg_names_line_1(text: str) -> None:
    with pytest.raises(ReaderError) as err:
        parse_loadavg(text)
    assert err.value.line == 1


@pytest.mark.parametrize("text, expected", [("974.26 1844.58\n", 974.26), ("5", 5.0)])
def test_parse_uptime(text: str, expected: float) -> None:
    assert parse_uptime(text) == expected


@pytest.mark.parametrize("text", ["", "up 5 days"])
def test_malformed_uptime(text: str) -> None:
    with pytest.raises(ReaderError):
        parse_uptime(text)
