"""What the docker module takes from the Engine API: inspect, events and stats replies, checked field by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hsflowd_py.modules.docker import _event_fields
from hsflowd_py.modules.docker.counters import parse_stats
from hsflowd_py.modules.docker.engine import Malformed, valid_id
from hsflowd_py.modules.docker.inspect import cpuset_size, parse_inspect
from hsflowd_py.modules.docker.names import UniqueNames

ID = "2bd9fd3505771b9f84efc837f9ee0f8066bb7bdcd5221ea7709c1ad0f82ba27c"

# Trimmed from a real Engine 20.10 reply (fields the module does not read left out).
INSPECT: dict[str, Any] = {
    "Id": ID,
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Paused": False, "Pid": 28185},
    "Config": {"Hostname": "2bd9fd350577", "Image": "hsflowd-test/busybox", "Labels": {}},
    "HostConfig": {"Memory": 0, "NanoCpus": 0, "CpuCount": 0, "CpusetCpus": ""},
    "NetworkSettings": {
        "Networks": {"bridge": {"MacAddress": "02:42:ac:11:00:02", "IPAddress": "172.17.0.2", "GlobalIPv6Address": ""}}
    },
}


def reply(**changes: Any) -> dict[str, Any]:
    """INSPECT with dotted-path changes; a value of ... deletes the field."""
    out = copy.deepcopy(INSPECT)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = out
        for p in parents:
            node = node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return out


def test_inspect_fields() -> None:
    info = parse_inspect(INSPECT)
    assert (info.name, info.hostname, info.pid, info.running, info.paused) == (
        "web",
        "2bd9fd350577",
        28185,
        True,
        False,
    )
    assert info.uuid == bytes.fromhex(ID[:32]) and info.short_id == "2bd9fd350577"
    assert info.display_name == "web" and not info.pod_sandbox
    assert len(info.endpoints) == 1
    assert info.endpoints[0].mac == bytes.fromhex("0242ac110002")
    assert [str(a) for a in info.endpoints[0].addresses] == ["172.17.0.2"]
    assert info.vcpus(host_cpus=8) == 8


@pytest.mark.parametrize(
    "changes, vcpus",
    [
        ({"HostConfig__CpuCount": 3}, 3),
        ({"HostConfig__NanoCpus": 1_500_000_000}, 2),
        ({"HostConfig__NanoCpus": 250_000_000}, 1),
        ({"HostConfig__CpusetCpus": "0-3,6"}, 5),
        ({"HostConfig__CpuCount": ..., "HostConfig__NanoCpus": ...}, 8),
    ],
)
def test_vcpus(changes: dict[str, Any], vcpus: int) -> None:
    assert parse_inspect(reply(**changes)).vcpus(host_cpus=8) == vcpus


def test_cpuset_size() -> None:
    assert cpuset_size("") == 0 and cpuset_size("1") == 1 and cpuset_size("0-1,4-5,7") == 5
    with pytest.raises(Malformed):
        cpuset_size("0-x")


def test_kubernetes_names_and_pause_containers() -> None:
    labels = {
        "io.kubernetes.container.name": "nginx",
        "io.kubernetes.pod.name": "web-7c5dd",
        "io.kubernetes.pod.namespace": "shop",
    }
    info = parse_inspect(reply(Name="/k8s_nginx_web-7c5dd_shop_0f3a_0", Config__Labels=labels))
    assert info.display_name == "shop/web-7c5dd/nginx" and not info.pod_sandbox
    sandbox = {**labels, "io.kubernetes.docker.type": "podsandbox"}
    assert parse_inspect(reply(Config__Labels=sandbox)).pod_sandbox
    for image in ("registry.k8s.io/pause:3.9", "k8s.gcr.io/pause", "pause@sha256:abc"):
        assert parse_inspect(reply(Config__Image=image)).pod_sandbox, image
    assert not parse_inspect(reply(Config__Image="example/pauser:1")).pod_sandbox


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"Id": "abc"}, "Id"),
        ({"Name": ...}, "lacks Name"),
        ({"State__Pid": "28185"}, "State.Pid is str"),
        ({"State__Pid": True}, "State.Pid is bool"),
        ({"State__Running": ...}, "lacks State.Running"),
        ({"State": "running"}, "lacks State.Pid"),
        ({"HostConfig__Memory": 1.5}, "HostConfig.Memory is float"),
        ({"Config__Labels": {"a": 1}}, "Config.Labels"),
        ({"Config__Labels": ["a"]}, "Config.Labels is list"),
        ({"NetworkSettings__Networks": {"bridge": "x"}}, "Networks.bridge"),
        ({"NetworkSettings__Networks": {"bridge": {"IPAddress": "300.1.1.1"}}}, "Networks.bridge"),
        ({"HostConfig__CpusetCpus": "a-b"}, "CpusetCpus"),
    ],
)
def test_malformed_inspect_names_the_field(changes: dict[str, Any], complaint: str) -> None:
    with pytest.raises(Malformed) as err:
        parse_inspect(reply(**changes))
    assert complaint in str(err.value)


def test_fields_not_read_are_not_checked() -> None:
    """An odd value in a field the module does not use must not cost the container its samples."""
    assert parse_inspect(reply(HostConfig__NetworkMode=["bridge"], State__Status=7)).pid == 28185


def test_optional_fields_default() -> None:
    info = parse_inspect(
        reply(
            HostConfig__NanoCpus=...,
            HostConfig__CpuCount=...,
            Config__Labels=None,
            NetworkSettings__Networks=None,
            State__Paused=...,
        )
    )
    assert info.labels == {} and info.endpoints == () and info.nano_cpus == 0 and not info.paused


def test_valid_id() -> None:
    assert valid_id(ID) and not valid_id(ID[:63]) and not valid_id(ID[:63] + "g") and not valid_id(None)


@pytest.mark.parametrize(
    "event, fields",
    [
        (
            {"Type": "container", "Action": "start", "Actor": {"ID": ID, "Attributes": {"name": "web"}}},
            ("container", "start", ID, {"name": "web"}),
        ),
        (
            {"Type": "container", "Action": "exec_start: sh -c true", "Actor": {"ID": ID}},
            ("container", "exec_start", ID, {}),
        ),
        (
            {"Type": "network", "Action": "connect", "Actor": {"ID": "net1", "Attributes": {"container": ID}}},
            ("network", "connect", "net1", {"container": ID}),
        ),
    ],
)
def test_event_fields(event: dict[str, Any], fields: tuple[Any, ...]) -> None:
    assert _event_fields(event) == fields


@pytest.mark.parametrize(
    "event",
    [
        [],
        "start",
        {"Type": "container", "Action": "start"},
        {"Type": "container", "Action": "start", "Actor": {"ID": "short"}},
        {"Type": "container", "Action": 7, "Actor": {"ID": ID}},
        {"Type": "container", "Action": "start", "Actor": {"ID": ID, "Attributes": ["x"]}},
    ],
)
def test_malformed_events(event: Any) -> None:
    assert _event_fields(event)[0] is None


STATS_V1: dict[str, Any] = {
    "cpu_stats": {"cpu_usage": {"total_usage": 1367233086668, "percpu_usage": [1, 2]}},
    "memory_stats": {"usage": 1359872, "limit": 3973283840, "stats": {"cache": 4096}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 48, "op": "Read", "value": 29769728},
            {"major": 8, "minor": 48, "op": "Write", "value": 4096},
            {"major": 8, "minor": 48, "op": "Total", "value": 29773824},
        ],
        "io_serviced_recursive": [
            {"major": 8, "minor": 48, "op": "Read", "value": 337},
            {"major": 8, "minor": 48, "op": "Write", "value": 1},
        ],
    },
    "networks": {
        "eth0": {"rx_bytes": 100, "rx_packets": 2, "rx_errors": 0, "rx_dropped": 1, "tx_bytes": 50, "tx_packets": 1},
        "eth1": {"rx_bytes": 10, "rx_packets": 1, "tx_bytes": 5, "tx_packets": 1, "tx_errors": 2, "tx_dropped": 3},
    },
}


def test_stats_reply() -> None:
    r = parse_stats(STATS_V1)
    assert (r.cpu_ns, r.memory, r.memory_limit) == (1367233086668, 1359872, 3973283840)
    assert r.io == {"rd_bytes": 29769728, "wr_bytes": 4096, "rd_req": 337, "wr_req": 1}
    assert r.net == {
        "bytes_in": 110,
        "pkts_in": 3,
        "errs_in": 0,
        "drops_in": 1,
        "bytes_out": 55,
        "pkts_out": 2,
        "errs_out": 2,
        "drops_out": 3,
    }


def test_stats_reply_of_a_container_without_network_or_io() -> None:
    """cgroup v2 engines send null blkio lists; --network none has no networks key."""
    r = parse_stats({"cpu_stats": {"cpu_usage": {"total_usage": 5}}, "blkio_stats": {}, "memory_stats": {}})
    assert (r.cpu_ns, r.memory, r.net) == (5, None, None)
    assert r.io == {"rd_bytes": 0, "wr_bytes": 0, "rd_req": 0, "wr_req": 0}


@pytest.mark.parametrize(
    "bad",
    [
        {"cpu_stats": {"cpu_usage": {"total_usage": "5"}}},
        {"networks": ["eth0"]},
        {"networks": {"eth0": {"rx_bytes": 1.5}}},
        {"blkio_stats": {"io_service_bytes_recursive": {"op": "Read"}}},
    ],
)
def test_malformed_stats(bad: dict[str, Any]) -> None:
    with pytest.raises(Malformed):
        parse_stats(bad)


def test_unique_names_first_claimant_keeps_the_plain_name() -> None:
    names = UniqueNames()
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    names.claim(a, "web")
    names.claim(b, "web")
    assert names.name(a) == "web" and names.name(b) == "web.bbbbbbbbbbbb"
    names.release(a)
    names.claim(c, "web")
    assert names.name(b) == "web.bbbbbbbbbbbb" and names.name(c) == "web"
    names.claim(b, "api")  # renamed
    assert names.name(b) == "api"
    long = "x" * 70
    names.claim(a, long)
    names.claim(b, long)
    assert names.name(a) == long and names.name(b) == "x" * 51 + ".bbbbbbbbbbbb" and len(names.name(b)) == 64
