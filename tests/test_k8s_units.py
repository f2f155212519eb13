"""The k8s module's pieces without a runtime: the CRI wire codec checked against Google's protobuf
library (python3-protobuf, built from a descriptor of the same api.proto fields), the pod names,
and the pod cgroup found in the layouts of both kubelet cgroup drivers, v1 and v2, on fixture trees."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.config import parse_config
from hsflowd_py.modules.k8s import containerd_api, cri
from hsflowd_py.modules.k8s.pod import MAX_HOSTNAME_BYTES, PodProber, cut_hostname, names_pod, pod_hostname
from hsflowd_py.modules.k8s.proto import Field, Message, ProtoError

pb = pytest.importorskip("google.protobuf.descriptor_pb2", reason="python3-protobuf is the codec's ground truth")

UID = "6f1e7c2a-0b7d-4e44-9a47-2d8e8f0c1b11"
SANDBOX_ID = "4d0650ca94fcf43d1379aef7f266e4305034e7e353261ec8cf7ec767aecc8c38"


def google_messages() -> dict[str, type]:
    """PodSandbox, ListPodSandboxResponse and PodSandboxStatusResponse as Google's protobuf builds
    them from a descriptor (field numbers typed in from kubernetes/cri-api's api.proto)."""
    from google.protobuf import descriptor_pool, message_factory

    T = pb.FieldDescriptorProto
    f = pb.FileDescriptorProto(name="k8s_test_api.proto", package="runtime.v1", syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, str, bool]]) -> None:
        m = f.message_type.add(name=name)
        for fname, number, ftype, type_name, repeated in fields:
            fd = m.field.add(name=fname, number=number, type=ftype)
            fd.label = T.LABEL_REPEATED if repeated else T.LABEL_OPTIONAL
            if type_name:
                fd.type_name = type_name

    entry = f.message_type.add(name="StringEntry")  # map<string,string> on the wire: repeated key/value
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    message(
        "PodSandboxMetadata",
        [
            ("name", 1, T.TYPE_STRING, "", False),
            ("uid", 2, T.TYPE_STRING, "", False),
            ("namespace", 3, T.TYPE_STRING, "", False),
            ("attempt", 4, T.TYPE_UINT32, "", False),
        ],
    )
    message(
        "PodSandbox",
        [
            ("id", 1, T.TYPE_STRING, "", False),
            ("metadata", 2, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxMetadata", False),
            ("state", 3, T.TYPE_UINT32, "", False),
            ("created_at", 4, T.TYPE_INT64, "", False),
            ("labels", 5, T.TYPE_MESSAGE, ".runtime.v1.StringEntry", True),
            ("runtime_handler", 7, T.TYPE_STRING, "", False),
        ],
    )
    message("ListPodSandboxResponse", [("items", 1, T.TYPE_MESSAGE, ".runtime.v1.PodSandbox", True)])
    message("PodIP", [("ip", 1, T.TYPE_STRING, "", False)])
    message(
        "PodSandboxNetworkStatus",
        [("ip", 1, T.TYPE_STRING, "", False), ("additional_ips", 2, T.TYPE_MESSAGE, ".runtime.v1.PodIP", True)],
    )
    message(
        "PodSandboxStatus",
        [
            ("id", 1, T.TYPE_STRING, "", False),
            ("metadata", 2, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxMetadata", False),
            ("network", 5, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxNetworkStatus", False),
        ],
    )
    message(
        "PodSandboxStatusResponse",
        [
            ("status", 1, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxStatus", False),
            ("info", 2, T.TYPE_MESSAGE, ".runtime.v1.StringEntry", True),
            ("timestamp", 4, T.TYPE_INT64, "", False),
        ],
    )
    message("PodSandboxStateValue", [("state", 1, T.TYPE_UINT32, "", False)])
    message("PodSandboxFilter", [("state", 2, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxStateValue", False)])
    message("ListPodSandboxRequest", [("filter", 1, T.TYPE_MESSAGE, ".runtime.v1.PodSandboxFilter", False)])
    message(  # containerd's api/types/task/task.proto and tasks/v1/tasks.proto
        "Process",
        [
            ("container_id", 1, T.TYPE_STRING, "", False),
            ("id", 2, T.TYPE_STRING, "", False),
            ("pid", 3, T.TYPE_UINT32, "", False),
            ("status", 4, T.TYPE_UINT32, "", False),
            ("stdout", 6, T.TYPE_STRING, "", False),
        ],
    )
    message("ListTasksResponse", [("tasks", 1, T.TYPE_MESSAGE, ".runtime.v1.Process", True)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    names = ["ListPodSandboxResponse", "PodSandboxStatusResponse", "ListPodSandboxRequest", "ListTasksResponse"]
    return {
        n: message_factory.MessageFactory(pool).GetPrototype(pool.FindMessageTypeByName(f"runtime.v1.{n}"))
        for n in names
    }


GOOGLE = google_messages()


def test_list_reply_encoded_by_protobuf_decodes_to_the_same_pods() -> None:
    reply = GOOGLE["ListPodSandboxResponse"]()
    for i, ns in enumerate(["default", "kube-system", "é-ns"]):
        item = reply.items.add(id=f"{i:064x}", state=0, created_at=-5 if i == 1 else 1_700_000_000_000_000_000)
        item.metadata.name, item.metadata.uid, item.metadata.namespace, item.metadata.attempt = f"p{i}", UID, ns, i
        item.labels.add(key="app", value=f"v{i}")
        item.runtime_handler = "runc"  # a field the module's schema leaves out: skipped
    reply.items.add(id="no-metadata")  # not a pod the module can name
    listing = cri.parse_listing(reply.SerializeToString())
    assert list(listing) == [*(f"{i:064x}" for i in range(3)), "no-metadata"]
    pods = [cri.parse_sandbox(listing[f"{i:064x}"]) for i in range(3)]
    assert pods == [
        cri.Sandbox(f"{i:064x}", f"p{i}", ns, UID, i) for i, ns in enumerate(["default", "kube-system", "é-ns"])
    ]
    with pytest.raises(cri.Malformed, match="without id or name"):
        cri.parse_sandbox(listing["no-metadata"])
    wider = Message("PodSandbox", (Field(4, "created_at", "int"), Field(5, "labels", "map")))
    assert [wider.decode(listing[f"{i:064x}"]) for i in (0, 1)] == [
        {"created_at": 1_700_000_000_000_000_000, "labels": {"app": "v0"}},
        {"created_at": -5, "labels": {"app": "v1"}},
    ]


def test_status_reply_gives_pid_and_addresses() -> None:
    reply = GOOGLE["PodSandboxStatusResponse"]()
    reply.status.id = SANDBOX_ID
    reply.status.network.ip = "10.253.118.7"
    reply.status.network.additional_ips.add(ip="fd00::7")
    reply.info.add(key="info", value='{"pid": 4242, "runtimeSpec": {}}')
    reply.timestamp = 1
    status = cri.parse_status(reply.SerializeToString())
    assert status == cri.SandboxStatus(4242, ("10.253.118.7", "fd00::7"))
    reply.info[0].value = "not json"
    assert cri.parse_status(reply.SerializeToString()).pid is None


def test_list_request_parses_in_protobuf_with_the_ready_filter() -> None:
    request = GOOGLE["ListPodSandboxRequest"]()
    request.ParseFromString(cri.LIST_POD_SANDBOX_REQUEST.encode({"filter": {"state": {"state": cri.SANDBOX_READY}}}))
    assert request.HasField("filter") and request.filter.HasField("state") and request.filter.state.state == 0


def test_containerd_task_list_decodes_as_protobuf_encodes_it() -> None:
    reply = GOOGLE["ListTasksResponse"]()
    reply.tasks.add(id="web", pid=4242, status=2, stdout="/run/x/stdout")  # as Tasks.List fills it
    reply.tasks.add(container_id="done", pid=0, status=3)
    decoded = containerd_api.LIST_TASKS_RESPONSE.decode(reply.SerializeToString())
    assert decoded["tasks"] == [
        {"container_id": "", "id": "web", "pid": 4242, "status": containerd_api.TASK_RUNNING},
        {"container_id": "done", "id": "", "pid": 0, "status": 3},
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"\x0a\x05ab", "ListPodSandboxResponse.items: length 5 past the end"),
        (b"\x0a\x01\x0a", "PodSandbox: truncated"),
        (b"\x0a\x03\x12\x01\x0a", "ListPodSandbox item: PodSandboxMetadata: truncated"),
        (b"\x08\x01", "ListPodSandboxResponse.items: wire type 0 for a bytes"),
        (b"\x0a\x03\x0a\x01\xff", "PodSandbox.id: not UTF-8"),
        (b"\x0b", "ListPodSandboxResponse: field 1 has wire type 3"),
    ],
)
def test_garbage_is_named(data: bytes, where: str) -> None:
    with pytest.raises(cri.Malformed, match=where.replace(".", r"\.")):
        for item in cri.parse_listing(data).values():
            cri.parse_sandbox(item)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_malformed(data: bytes) -> None:
    for parse in (cri.parse_listing, cri.parse_sandbox, cri.parse_status):
        with contextlib.suppress(cri.Malformed):
            parse(data)


def test_codec_errors_are_value_errors() -> None:
    assert issubclass(ProtoError, ValueError)


# ------------------------------------------------------------------ names


def test_pod_veth_naming_is_on_with_the_block_as_in_the_established_agent() -> None:
    """hsflowconfig.c sets k8s.setIfAlias and k8s.setIfName on the k8s block's opening brace."""
    on = parse_config("sflow { collector { ip = 127.0.0.1 } k8s { } }").k8s
    assert on is not None and (on.set_if_alias, on.set_if_name) == (True, True)
    off = parse_config("sflow { collector { ip = 127.0.0.1 } k8s { setIfName = off } }").k8s
    assert off is not None and (off.set_if_alias, off.set_if_name) == (True, False)


def test_check_says_eof_is_accepted_and_ignored_and_why(tmp_path: Path) -> None:
    """mod_k8s.c aborts the agent when its Go helper's output ends, unless ``eof = on``: there is no
    helper here, and a runtime that goes away is retried (test_k8s_faults.py)."""
    conf = tmp_path / "hsflowd.conf"
    conf.write_text("sflow {\n collector { ip = 127.0.0.1 }\n k8s { eof = on }\n containerd { forgetVMs = 90 }\n}\n")
    check = [sys.executable, "-m", "hsflowd_py", "--check", "-f", str(conf)]
    out = subprocess.run(check, capture_output=True, text=True, check=True).stdout.splitlines()
    notes = [line for line in out if "accepted and ignored" in line]
    assert notes[0].startswith(f"# warning: {conf}:3: key 'eof' in block 'k8s' is accepted and ignored: ")
    assert "helper" in notes[0] and "retries" in notes[0]
    assert notes[1].startswith(f"# warning: {conf}:4: key 'forgetVMs' in block 'containerd' is accepted and ignored")
    settings = parse_config(conf.read_text())
    assert settings.k8s is not None and settings.k8s.eof
    assert parse_config("\n".join(settings.describe())) == settings


def test_short_pod_hostname_is_the_established_agents() -> None:
    assert pod_hostname("web-1", "shop") == "k8s__web-1_shop_u_a"


def test_long_pod_names_are_cut_to_64_bytes_and_stay_distinct() -> None:
    base = "checkout-service-deployment-7f9c8d6b5-" + "x" * 200
    a, b = pod_hostname(base + "a", "payments-production"), pod_hostname(base + "b", "payments-production")
    assert a != b
    for name in (a, b, pod_hostname("p", "n" * 63), pod_hostname("é" * 100, "ü" * 40)):
        assert len(name.encode()) <= MAX_HOSTNAME_BYTES
        name.encode().decode()  # no multi-byte character cut in half
    assert a.startswith("k8s__checkout-service") and a.endswith("_payments-production_u_a")


def test_container_ids_over_64_bytes_are_cut_with_a_hash() -> None:
    assert cut_hostname("web") == "web"
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    assert cut_hostname(long_a) != cut_hostname(long_b)
    assert all(len(cut_hostname(n).encode()) == MAX_HOSTNAME_BYTES for n in (long_a, long_b))


def test_cgroup_names_of_both_drivers() -> None:
    assert names_pod(f"/kubepods/burstable/pod{UID}", UID)
    assert names_pod(
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice", UID
    )
    assert not names_pod("/kubepods/burstable", UID)
    assert not names_pod(f"/kubepods/pod{uuid.uuid4()}", UID)


# ------------------------------------------------------------------ pod cgroups on fixture trees


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


V2_MOUNTS = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = (
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "34 31 0:31 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n"
)


@pytest.mark.parametrize(
    ("layout", "pod_path", "scope"),
    [
        (
            "v2-systemd",
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice",
            f"cri-containerd-{SANDBOX_ID}.scope",
        ),
        ("v2-cgroupfs", f"/kubepods/burstable/pod{UID}", SANDBOX_ID),
        (
            "v2-guaranteed-crio",
            f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice",
            f"crio-{SANDBOX_ID}.scope",
        ),
        ("v1-cgroupfs", f"/kubepods/besteffort/pod{UID}", SANDBOX_ID),
        (
            "v1-systemd",
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice",
            f"cri-containerd-{SANDBOX_ID}.scope",
        ),
    ],
)
def test_pod_counters_come_from_the_pod_cgroup(tmp_path: Path, layout: str, pod_path: str, scope: str) -> None:
    """The sandbox's cgroup is a child of the pod's; the pod's files (every container's sum) are read."""
    root = tmp_path / layout
    v2 = layout.startswith("v2")
    write(root / "proc/self/mountinfo", V2_MOUNTS if v2 else V1_MOUNTS)
    if v2:
        write(root / "proc/4242/cgroup", f"0::{pod_path}/{scope}\n")
        pod = root / "sys/fs/cgroup" / pod_path.lstrip("/")
        write(pod / "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
        write(pod / "memory.current", "7340032\n")
        write(pod / "memory.max", "134217728\n")
        write(pod / "io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")
        write(pod / scope / "memory.current", "1\n")  # the sandbox's own: not what is read
    else:
        write(
            root / "proc/4242/cgroup",
            "".join(f"{n}:{c}:{pod_path}/{scope}\n" for n, c in ((3, "cpu,cpuacct"), (4, "memory"), (5, "blkio"))),
        )
        cpu, mem, blk = (root / "sys/fs/cgroup" / c / pod_path.lstrip("/") for c in ("cpu,cpuacct", "memory", "blkio"))
        write(cpu / "cpuacct.usage", "1500000000\n")
        write(mem / "memory.usage_in_bytes", "7340032\n")
        write(mem / "memory.limit_in_bytes", "134217728\n")
        write(blk / "blkio.throttle.io_service_bytes_recursive", "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n")
        write(blk / "blkio.throttle.io_serviced_recursive", "8:0 Read 1\n8:0 Write 2\nTotal 3\n")
    sandbox = cri.Sandbox(SANDBOX_ID, "web", "shop", UID, 0)
    probe = PodProber(root).probe(4242, sandbox.uid, pod=True)
    assert probe.source is not None, probe.error
    reading, _ = probe.source.read(None)
    probe.close()
    assert (reading.cpu_ns, reading.memory, reading.memory_limit) == (1_500_000_000, 7340032, 134217728)
    assert reading.io == {"rd_bytes": 4096, "wr_bytes": 8192, "rd_req": 1, "wr_req": 2}


def test_a_cgroup_outside_the_pod_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "proc/self/mountinfo", V2_MOUNTS)
    write(tmp_path / "proc/4242/cgroup", f"0::/system.slice/other.service/{SANDBOX_ID}\n")
    probe = PodProber(tmp_path).probe(4242, UID, pod=True)
    assert probe.source is None and f"not in a cgroup of pod {UID}" in probe.error


def test_v1_block_io_without_throttle_statistics_sums_every_containers_processes(tmp_path: Path) -> None:
    """v1 blkio keeps no statistics for devices without throttle rules (cgroup.py): the pod's I/O is
    then its processes', and they live in the containers' child cgroups, not in the pod's own."""
    pod_path = f"/kubepods/besteffort/pod{UID}"
    write(tmp_path / "proc/self/mountinfo", V1_MOUNTS)
    write(
        tmp_path / "proc/4242/cgroup",
        "".join(f"{n}:{c}:{pod_path}/{SANDBOX_ID}\n" for n, c in ((3, "cpu,cpuacct"), (4, "memory"), (5, "blkio"))),
    )
    cpu, mem, blk = (tmp_path / "sys/fs/cgroup" / c / pod_path.lstrip("/") for c in ("cpu,cpuacct", "memory", "blkio"))
    write(cpu / "cpuacct.usage", "1\n")
    write(mem / "memory.usage_in_bytes", "1\n")
    write(mem / "memory.limit_in_bytes", "9223372036854771712\n")
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"):
        write(blk / name, "Total 0\n")
    for hierarchy in (cpu, mem, blk):  # every v1 hierarchy lists the same processes
        write(hierarchy / "cgroup.procs", "")
        write(hierarchy / SANDBOX_ID / "cgroup.procs", "4242\n")
        write(hierarchy / "c1" / "cgroup.procs", "5000\n5001\n")
    for pid, (rd, wr, cancelled) in {4242: (0, 0, 0), 5000: (4096, 65536, 4096), 5001: (8192, 0, 0)}.items():
        write(
            tmp_path / f"proc/{pid}/io",
            f"syscr 1\nsyscw 1\nread_bytes {rd}\nwrite_bytes {wr}\ncancelled_write_bytes {cancelled}\n",
        )
    probe = PodProber(tmp_path).probe(4242, UID, pod=True)
    assert probe.source is not None, probe.error
    reading, _ = probe.source.read(None)
    probe.close()
    assert reading.io == {"rd_bytes": 4096 + 8192, "wr_bytes": 65536 - 4096}
    assert reading.memory_limit is None
