"""/proc/net/snmp parsed by header name: the established agent's Icmp shift is fixed."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.snmp import parse_snmp

# Linux 6.x: Icmp has InCsumErrors after InErrors, and OutRateLimitGlobal/Host after OutErrors.
MODERN = """Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 3262 0 0 0 0 0 3262 2093 0 0 0 0 0 0 0 0 0 2093
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects InEchos InEchoReps InTimestamps InTimestampReps InAddrMasks InAddrMaskReps OutMsgs OutErrors OutRateLimitGlobal OutRateLimitHost OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps
Icmp: 8 0 0 5 0 0 0 0 3 0 0 0 0 0 7 0 0 0 4 0 0 0 0 0 3 0 0 0 0
IcmpMsg: InType3 InType8 OutType0 OutType3
IcmpMsg: 5 3 3 4
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 20 2 0 0 0 2678 1510 0 0 18 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 581 0 0 584 0 0 0 0 0
"""  # noqa: E501


def test_icmp_by_name_not_position() -> None:
    icmp = parse_snmp(MODERN)["Icmp"]
    # Positionally the 4th value (5) would land in InTimeExcds and the 9th (3) in InEchoReps.
    assert (icmp["InMsgs"], icmp["InDestUnreachs"], icmp["InTimeExcds"], icmp["InEchos"]) == (8, 5, 0, 3)
    assert (icmp["OutMsgs"], icmp["OutDestUnreachs"], icmp["OutEchoReps"]) == (7, 4, 3)


def test_groups_and_signed_values() -> None:
    snmp = parse_snmp(MODERN)
    assert set(snmp) == {"Ip", "Icmp", "IcmpMsg", "Tcp", "Udp"}
    assert snmp["Tcp"]["MaxConn"] == -1
    assert snmp["Ip"]["OutTransmits"] == 2093
    assert snmp["IcmpMsg"] == {"InType3": 5, "InType8": 3, "OutType0": 3, "OutType3": 4}


@pytest.mark.parametrize(
    "text, line",
    [
        ("Tcp: RtoAlgorithm RtoMin\nTcp: 1 200 3\n", 2),
        ("Udp: InDatagrams NoPorts\nUdp: 1 x\n", 2),
    ],
)
def test_malformed(text: str, line: int) -> None:
    with pytest.raises(ReaderError) as err:
        parse_snmp(text)
    assert err.value.line == line


def test_a_header_without_values_yields_nothing() -> None:
    assert parse_snmp("Ip: Forwarding\nTcp: RtoAlgorithm\nTcp: 1\n") == {"Tcp": {"RtoAlgorithm": 1}}
