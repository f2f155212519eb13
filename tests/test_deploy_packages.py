"""The deb and the rpm from ``bash packaging/build.sh``: same files, Debian's libraries, the unit, the conffile.

Installing the deb under systemd is test_deploy_deb.py; here the packages are read with the
package managers' own tools (dpkg-deb, rpm).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from deploy import BUILD_TOOLS, UNIT, packages, unit_settings
from procs import ROOT

from hsflowd_py import __version__

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in BUILD_TOOLS),
    reason="needs Debian's debhelper, dh-python and rpm (scripts/debian-test-packages.txt)",
)

DEBIAN_LIBRARIES = {
    "python3-dbus-next",
    "python3-dnspython",
    "python3-docker",
    "python3-psutil",
    "python3-pyroute2",
    "libbpf1",
}
RECOMMENDED = ("python3-bpfcc", "python3-grpcio", "python3-protobuf")
"""What the agent runs without: bcc (eBPF where the packaged object is refused), gRPC (k8s {} only)."""
DEBIAN_PYTHON3 = {"3.9.2-3": False, "3.11.2-1+b1": True, "3.12.6-1": True}
"""Debian's python3 (bullseye, bookworm, trixie) and whether the agent runs on it: 3.11 or newer."""
# Fedora's names for the same libraries.
RPM_NAMES = {"python3-dnspython": "python3-dns", "python3-bpfcc": "python3-bcc", "libbpf1": "libbpf"}
BPF_OBJECTS = ("sampler_core.bpfel.o", "sampler_core.bpfeb.o")
"""The eBPF sampler's objects, built by setup.py with the package (not part of the source tree)."""
DEB_SITE = "usr/lib/python3/dist-packages/"
RPM_SITE = "usr/share/hsflowd-py/"
"""The rpm's own folder, named for no Python version: it installs on any python3 >= 3.11."""


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def deb_files(deb: Path) -> dict[str, bytes]:
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    return tar_files(data)


def rpm_files(rpm: Path) -> dict[str, bytes]:
    with open(rpm, "rb") as f:
        data = subprocess.run(["rpm2archive", "-n", "-"], stdin=f, capture_output=True, check=True).stdout
    return tar_files(data)


def tar_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def source_modules() -> set[str]:
    """Every source file of the agent, named as installed: modules/ becomes hsflowd_py/modules/."""
    out = set()
    for top, installed in (("hsflowd_py", "hsflowd_py"), ("modules", "hsflowd_py/modules")):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".c", ".h") and "__pycache__" not in path.parts:
                out.add(f"{installed}/{path.relative_to(ROOT / top)}")
    return out


def referenced_docs() -> set[str]:
    """Files the unit (Documentation=) and the default config send the reader to."""
    unit = unit_settings()["Documentation"][0].removeprefix("file:")
    config = re.findall(r"/usr/share/doc/\S+\w", (ROOT / "packaging" / "hsflowd.conf").read_text())
    return {path.removeprefix("/") for path in [unit, *config]}


def python_files(files: dict[str, bytes], site: str) -> set[str]:
    """The package's sources (the rpm also ships bytecode, as Fedora does; the deb compiles it on install)."""
    return {
        name.removeprefix(site)
        for name in files
        if name.startswith(site + "hsflowd_py/") and name.endswith((".py", ".c", ".h"))
    }


def check_bpf_objects(files: dict[str, bytes], site: str) -> None:
    """Built with the package from its source: byte for byte what setup.py builds here (the build is
    reproducible), which the agent's tests load."""
    for name in BPF_OBJECTS:
        shipped = files[f"{site}hsflowd_py/modules/pcap/{name}"]
        assert shipped == (ROOT / "modules/pcap" / name).read_bytes(), name


def test_deb_installs_the_agent_unit_and_conffile() -> None:
    deb = packages().deb
    assert sh("dpkg-deb", "-f", str(deb), "Version").strip() == f"{__version__}-1"
    files = deb_files(deb)
    assert python_files(files, DEB_SITE) == source_modules()
    check_bpf_objects(files, DEB_SITE)
    assert files["lib/systemd/system/hsflowd-py.service"] == UNIT.read_bytes()
    assert files["etc/hsflowd.conf"] == (ROOT / "packaging" / "hsflowd.conf").read_bytes()
    assert files["usr/lib/tmpfiles.d/hsflowd-py.conf"] == (ROOT / "systemd/tmpfiles.d/hsflowd-py.conf").read_bytes()
    assert referenced_docs() <= set(files)
    for script in ("hsflowd-py", "sflowtool-py"):
        assert files[f"usr/bin/{script}"].startswith(b"#!/usr/bin/python3\n")
    conffiles = subprocess.run(["dpkg-deb", "-I", str(deb), "conffiles"], capture_output=True, text=True, check=True)
    assert conffiles.stdout.split() == ["/etc/hsflowd.conf"]


def test_deb_depends_on_debians_own_libraries() -> None:
    deb = packages().deb
    depends = {d.split()[0] for d in sh("dpkg-deb", "-f", str(deb), "Depends").split(",")}
    assert depends == DEBIAN_LIBRARIES | {"python3:any"}
    assert relations(deb, "Recommends") == set(RECOMMENDED)
    # the systemd maintainer scripts: enabled and started on install, stopped on removal
    postinst = sh("dpkg-deb", "-I", str(deb), "postinst")
    assert "deb-systemd-helper enable 'hsflowd-py.service'" in postinst
    assert "systemd-tmpfiles" in postinst and "--create hsflowd-py.conf" in postinst
    assert "deb-systemd-invoke stop 'hsflowd-py.service'" in sh("dpkg-deb", "-I", str(deb), "prerm")


def relations(deb: Path, field: str) -> set[str]:
    return {d.strip() for d in sh("dpkg-deb", "-f", str(deb), field).split(",") if d.strip()}


def test_deb_requires_python3_3_11() -> None:
    """The deb's python3 relation, put to dpkg against Debian's own python3 versions and this
    machine's: bullseye's 3.9 refused, bookworm's 3.11 and later accepted."""
    (relation,) = [d for d in relations(packages().deb, "Depends") if d.startswith("python3:any")]
    (version,) = re.fullmatch(r"python3:any \(>= (\S+)\)", relation).groups()
    installed = sh("dpkg-query", "-W", "-f", "${Version}", "python3")
    for candidate, runs in {**DEBIAN_PYTHON3, installed: True}.items():
        ok = subprocess.run(["dpkg", "--compare-versions", candidate, "ge", version], check=False).returncode == 0
        assert ok == runs, f"python3 {candidate} against {relation}"


def test_rpm_lists_the_same_files_and_requirements() -> None:
    rpm = str(packages().rpm)
    assert sh("rpm", "-qp", "--qf", "%{NAME} %{VERSION} %{ARCH}", rpm) == f"hsflowd-py {__version__} noarch"
    listed = set(sh("rpm", "-qpl", rpm).split())
    for path in (
        "/usr/bin/hsflowd-py",
        "/usr/bin/sflowtool-py",
        "/etc/hsflowd.conf",
        "/etc/hsflowd.auto",
        "/usr/lib/systemd/system/hsflowd-py.service",
        "/usr/lib/tmpfiles.d/hsflowd-py.conf",
        f"/{RPM_SITE}hsflowd_py/modules/__init__.py",
    ):
        assert path in listed
    assert sh("rpm", "-qpc", rpm).split() == ["/etc/hsflowd.conf"]
    builders_python = [p for p in listed if re.search(r"python3\.\d+|__pycache__|\.pyc$", p)]
    assert not builders_python, "nothing in the rpm is of the builder's python version"
    requires = {r.split()[0] for r in sh("rpm", "-qpR", rpm).splitlines()}
    assert {RPM_NAMES.get(d, d) for d in DEBIAN_LIBRARIES} <= requires
    assert "python(abi)" not in requires
    assert {"python3 >= 3.11", "/usr/bin/python3"} <= set(sh("rpm", "-qpR", rpm).splitlines())
    assert set(sh("rpm", "-qp", "--recommends", rpm).split()) == {RPM_NAMES.get(d, d) for d in RECOMMENDED}
    files = rpm_files(packages().rpm)
    assert python_files(files, RPM_SITE) == python_files(deb_files(packages().deb), DEB_SITE)
    check_bpf_objects(files, RPM_SITE)
    assert files["usr/lib/systemd/system/hsflowd-py.service"] == UNIT.read_bytes()
    assert files["etc/hsflowd.conf"] == (ROOT / "packaging" / "hsflowd.conf").read_bytes()
    assert referenced_docs() <= set(files)


def test_rpm_commands_run_the_code_from_the_rpms_folder(tmp_path: Path) -> None:
    """/usr/bin/hsflowd-py and sflowtool-py of the rpm, run by this machine's python3 with the rpm's
    folder where they expect it (their text, the folder moved under tmp_path): each starts its CLI."""
    files = rpm_files(packages().rpm)
    for name, data in files.items():
        if name.startswith(RPM_SITE):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
    for script, expected in (("hsflowd-py", f"hsflowd-py {__version__}"), ("sflowtool-py", "sflowtool-py")):
        text = files[f"usr/bin/{script}"].decode()
        assert text.startswith("#!/usr/bin/python3\n")
        text = text.replace(f'"/{RPM_SITE.rstrip("/")}"', f'"{tmp_path / RPM_SITE}"')
        run = subprocess.run(
            ["/usr/bin/python3", "-I", "-c", text, "-v" if script == "hsflowd-py" else "--help"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr
        assert expected in run.stdout


def test_build_refuses_versions_that_disagree(tmp_path: Path) -> None:
    """One version in three places (the code, debian/changelog, the spec): the build checks them."""
    (tmp_path / "hsflowd_py").mkdir()
    (tmp_path / "hsflowd_py" / "__init__.py").write_text('__version__ = "9.9.9"\n')
    subprocess.run(["cp", "-r", str(ROOT / "packaging"), str(tmp_path)], check=True)
    r = subprocess.run(["bash", str(tmp_path / "packaging" / "build.sh")], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"versions disagree: hsflowd_py 9.9.9, debian/changelog {__version__}, spec {__version__}" in r.stderr
    assert not (tmp_path / "dist").exists()
