"""Maps the top-level modules/ folder to the subpackage hsflowd_py.modules, and compiles the eBPF
programs (the pcap sampler, the drop monitor) into the BPF objects the package ships (so that no
host needs a compiler or kernel headers).

The objects are built by ``build_py``: into the build tree for a wheel, deb or rpm, next to the
source for an editable install (``pip install -e .``, scripts/setup.sh).  ``CLANG`` names the
compiler (default ``clang``); the UAPI headers come from linux-libc-dev (kernel-headers on rpm
distributions) and ``bpf/bpf_helpers.h`` from libbpf-dev (libbpf-devel).
"""

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
BPF_SOURCES = {
    Path("modules/pcap/sampler_core.bpf.c"): ["-mcpu=v3"],  # atomic fetch-and-add (kernel 5.12 on)
    Path("modules/dropmon/dropmon.bpf.c"): ["-mcpu=v3"],  # compare-and-swap (kernel 5.12 on)
}
"""Each source with its own flags; it becomes ``<stem>.bpfel.o`` and ``<stem>.bpfeb.o`` beside it, one
object per byte order (the BPF target follows the host's), of which the loader picks the host's."""


def build_bpf_objects(out_dir: Path, source: Path, flags: list[str]) -> None:
    """Compile one program for both byte orders; reproducible (no build path in the debug info)."""
    clang = os.environ.get("CLANG", "clang")
    if shutil.which(clang) is None:
        raise SystemExit(f"setup.py: {clang} not found: building the eBPF object needs clang and libbpf-dev")
    includes = [f"-I/usr/include/{multiarch}"] if (multiarch := sysconfig.get_config_var("MULTIARCH")) else []
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = source.name.removesuffix(".bpf.c")
    for target in ("bpfel", "bpfeb"):
        command = [clang, "-target", target, *flags, "-O2", "-g", "-Wall", "-Werror", *includes]
        command += ["-fdebug-compilation-dir=.", "-c", str(source), "-o", str(out_dir.resolve() / f"{stem}.{target}.o")]
        subprocess.run(command, check=True, cwd=HERE)


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        super().run()
        for source, flags in BPF_SOURCES.items():
            if getattr(self, "editable_mode", False):
                build_bpf_objects(HERE / source.parent, source, flags)
            else:
                build_bpf_objects(Path(self.build_lib) / "hsflowd_py" / source.parent, source, flags)


core = find_packages(include=["hsflowd_py", "hsflowd_py.*"])
modules = ["hsflowd_py.modules"] + [f"hsflowd_py.modules.{p}" for p in find_packages("modules")]
setup(
    packages=core + modules,
    package_dir={"hsflowd_py": "hsflowd_py", "hsflowd_py.modules": "modules"},
    package_data={"hsflowd_py.modules": ["*.c", "*/*.c", "*/*.h"]},
    cmdclass={"build_py": BuildPyWithBpf},
)
