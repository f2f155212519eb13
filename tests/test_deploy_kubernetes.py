"""The DaemonSet: valid against the Kubernetes API schemas, and in step with the image it runs.

The schemas are kubernetes-validate's copies of the API's OpenAPI definitions (offline). The
manifest's container is checked against the real Dockerfile and entrypoint: it must not replace
the ENTRYPOINT, may set only variables the entrypoint reads, and its values must make a config
the agent accepts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deploy import (
    DOCKERFILE,
    ENTRYPOINT,
    daemonset,
    daemonset_container,
    daemonset_pod,
    entrypoint_variables,
    unit_capabilities,
)

from hsflowd_py import __version__, cli, privileges

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[test]'")

OLDEST_KUBERNETES = "1.25.0"


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_manifest_passes_the_api_schema(version: str) -> None:
    assert daemonset()["kind"] == "DaemonSet"
    kubernetes_validate.validate(daemonset(), version, strict=True)


def test_a_typo_fails_the_schema() -> None:
    """The check above can fail: strict validation refuses fields the API does not have."""
    broken = daemonset()
    broken["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="hostNetwrok"):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


def test_runs_on_every_node_in_the_nodes_namespaces() -> None:
    spec = daemonset_pod()
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]
    resources = daemonset_container()["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}


def test_container_runs_the_images_entrypoint() -> None:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE.read_text(), re.M).group(1))
    assert entrypoint == ["/usr/local/bin/hsflowd-py-entrypoint"]
    assert f"/tmp/hsflowd-py/{ENTRYPOINT.name} {entrypoint[0]}" in DOCKERFILE.read_text()
    c = daemonset_container()
    assert "command" not in c and "args" not in c, "the image's ENTRYPOINT writes the config: keep it"
    assert c["image"] == f"hsflowd-py:{__version__}"
    probe = c["livenessProbe"]["exec"]["command"]
    assert probe[0] == "hsflowd-py" and cli.parse_args(probe[1:]).status


def test_environment_is_what_the_entrypoint_reads_and_makes_a_valid_config(tmp_path: Path) -> None:
    env = {e["name"]: e["value"] for e in daemonset_container()["env"]}
    read, _ = entrypoint_variables()
    assert set(env) <= read
    assert {"COLLECTOR", "SAMPLING", "POLLING", "NET"} <= set(env)
    r = subprocess.run(
        ["sh", str(ENTRYPOINT), "--check"],
        env={
            **env,
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HSFLOWD_CONFIG": str(tmp_path / "hsflowd.conf"),
            "HOST_RUN": str(tmp_path / "no-run"),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert f"collector {{ ip = {env['COLLECTOR']} udpport = {env['PORT']} }}" in r.stdout


def mounts() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mountPath → (the container's volumeMount, the pod's hostPath of that volume)."""
    volumes = {v["name"]: v["hostPath"] for v in daemonset_pod()["volumes"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in daemonset_container()["volumeMounts"]}


def test_every_mount_is_on_every_node_and_read_only() -> None:
    """A node without Docker (or without any one runtime) starts the pod: each hostPath is a folder
    or file that every Linux node has, of a type the kubelet checks without creating anything
    (a missing docker.sock of type Socket stopped the pod; an unchecked type makes the runtime
    create a folder in its place)."""
    got = {
        path: (m.get("readOnly"), m.get("mountPropagation"), h["path"], h["type"]) for path, (m, h) in mounts().items()
    }
    assert got == {
        "/host/run": (True, None, "/run", "Directory"),
        "/sys/fs/cgroup": (True, None, "/sys/fs/cgroup", "Directory"),
        "/etc/machine-id": (True, None, "/etc/machine-id", "File"),
    }


def test_the_nodes_run_is_where_the_entrypoint_looks_for_sockets(tmp_path: Path) -> None:
    """HOST_RUN names the mount of the node's /run, and the entrypoint finds Docker's and the CRI
    runtime's sockets at their places on the node, under it."""
    env = {e["name"]: e["value"] for e in daemonset_container()["env"]}
    _, host = mounts()[env["HOST_RUN"]]
    assert host["path"] == "/run"
    for name in ("docker.sock", "containerd/containerd.sock", "crio/crio.sock"):
        assert f"$run/{name}" in ENTRYPOINT.read_text()
    assert "DOCKER_SOCKET" not in env and "CRI_SOCKET" not in env, "found under HOST_RUN, whichever the node runs"


def test_capabilities_are_the_units() -> None:
    """The image samples with the eBPF sampler's prebuilt object through libbpf (the deb ships it
    and depends on libbpf1), so it needs CAP_BPF as the unit does; nothing opens perf events, so
    no CAP_PERFMON, and nothing beyond the capabilities the agent's modules can keep."""
    caps = daemonset_container()["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert set(caps["add"]) == {c.removeprefix("CAP_") for c in unit_capabilities()}
    kept = {c.removeprefix("CAP_") for c in privileges.CAPABILITIES} | {"SETUID", "SETGID", "SETPCAP"}
    assert set(caps["add"]) <= kept and "PERFMON" not in caps["add"]
    assert daemonset_container()["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
