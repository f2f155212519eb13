"""/proc/net/dev parsing by header."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.net_dev import parse_net_dev

HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast"
    "|bytes    packets errs drop fifo colls carrier compressed\n"
)


def test_columns_come_from_the_header() -> None:
    text = HEADER + "  eth0: 127761976    2701    1    2    0     0          0         3   130706    1540    4    5    0     0       0          0\n"  # noqa: E501
    eth0 = parse_net_dev(text)["eth0"]
    assert (eth0["rx_bytes"], eth0["rx_packets"], eth0["rx_errs"], eth0["rx_drop"], eth0["rx_multicast"]) == (
        127761976, 2701, 1, 2, 3)
    assert (eth0["tx_bytes"], eth0["tx_packets"], eth0["tx_errs"], eth0["tx_drop"], eth0["tx_colls"]) == (
        130706, 1540, 4, 5, 0)  # fmt: skip
    assert len(eth0) == 16


def test_old_kernels_glue_large_counts_to_the_colon() -> None:
    text = HEADER + "  eth0:1234567890 2000000 0 0 0 0 0 5000 987654321 1500000 0 0 0 0 0 0\n"
    assert parse_net_dev(text)["eth0"]["rx_bytes"] == 1234567890


def test_a_shorter_header_still_maps_by_name() -> None:
    text = " Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n  lo: 1 2 3 4\n\n"
    assert parse_net_dev(text) == {"lo": {"rx_bytes": 1, "rx_packets": 2, "tx_bytes": 3, "tx_packets": 4}}


@pytest.mark.parametrize(
    "text, line",
    [
        ("Inter-|\n", None),
        ("Inter-|\n face bytes packets\n", 2),
        (HEADER + "  eth0 1 2 3\n", 3),
        (HEADER + "  lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth0: 1 2 3\n", 4),
        (HEADER + "  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n", 3),
    ],
)
def test_malformed(text: str, line: int | None) -> None:
    with pytest.raises(ReaderError) as err:
        parse_net_dev(text)
    assert err.value.line == line
