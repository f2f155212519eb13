"""dropmon's readers of the running kernel: drop reason names and drop locations.

Ground truth is the kernel's own: the skb:kfree_skb tracepoint's format (tracefs, mounted here in
a private mount namespace so the host's mounts are untouched), bpftool's dump of the kernel's BTF,
and /proc/kallsyms.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hsflowd_py.modules.dropmon.kallsyms import Kallsyms
from hsflowd_py.modules.dropmon.reasons import (
    BTF_PATH,
    FORMAT_PATHS,
    ReasonsError,
    from_btf,
    from_format,
    read_reasons,
)

BTF = Path("/") / BTF_PATH
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tracefs mount, kallsyms addresses)")


def tracepoint_format() -> str:
    """The kernel's kfree_skb format, read from a tracefs mounted in a throw-away mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tracefs nodev {d} && cat {d}/events/skb/kfree_skb/format"],
            capture_output=True,
            text=True,
        )
    if out.returncode != 0:
        pytest.skip(f"no tracefs here: {out.stderr.strip()}")
    return out.stdout


def bpftool_reasons() -> dict[int, str]:
    """enum skb_drop_reason as bpftool prints the kernel's BTF in C."""
    if shutil.which("bpftool") is None or not BTF.exists():
        pytest.skip("needs bpftool and kernel BTF")
    c = subprocess.run(["bpftool", "btf", "dump", "file", str(BTF), "format", "c"], capture_output=True, text=True)
    body = re.search(r"enum skb_drop_reason \{(.*?)\};", c.stdout, flags=re.S)
    assert body is not None
    members = re.findall(r"(SKB_\w+) = (\d+),", body.group(1))
    return {
        int(n): re.sub(r"^SKB_(DROP_REASON_)?", "", name) for name, n in members if not name.endswith(("_MAX", "_MASK"))
    }


@root_only
def test_the_btf_enum_names_every_reason_the_tracepoint_prints() -> None:
    printed = from_format(tracepoint_format())
    assert len(printed) > 50 and printed[2] == "NOT_SPECIFIED"
    btf = from_btf(BTF.read_bytes())
    assert {n: btf[n] for n in printed} == printed


def test_the_btf_reader_agrees_with_bpftool() -> None:
    assert from_btf(BTF.read_bytes()) == bpftool_reasons()


@root_only
def test_the_tracepoint_format_wins_when_tracefs_is_mounted(tmp_path: Path) -> None:
    text = tracepoint_format()
    (tmp_path / FORMAT_PATHS[1]).parent.mkdir(parents=True)
    (tmp_path / FORMAT_PATHS[1]).write_text(text)
    (tmp_path / BTF_PATH).parent.mkdir(parents=True)
    (tmp_path / BTF_PATH).write_bytes(b"not BTF at all")
    names, where = read_reasons(tmp_path)
    assert where == f"/{FORMAT_PATHS[1]}"
    assert names[3] == "NO_SOCKET" and names == from_format(text)


def test_without_tracefs_the_kernel_btf_is_read(tmp_path: Path) -> None:
    (tmp_path / BTF_PATH).parent.mkdir(parents=True)
    shutil.copyfile(BTF, tmp_path / BTF_PATH)
    names, where = read_reasons(tmp_path)
    assert where == f"/{BTF_PATH}"
    assert names == bpftool_reasons()


def test_no_source_of_names_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReasonsError, match=r"no tracefs format of skb:kfree_skb and no kernel BTF at /sys/kernel/btf"):
        read_reasons(tmp_path)
    (tmp_path / BTF_PATH).parent.mkdir(parents=True)
    (tmp_path / BTF_PATH).write_bytes(b"\0" * 40)
    with pytest.raises(ReasonsError, match="not BTF"):
        read_reasons(tmp_path)


KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 t first_function
ffffffff81000180 d some_data
ffffffff81000200 T second_function
ffffffff81000300 W weak_function
ffffffffc0001000 t mod_function\t[nf_tables]
ffffffffc0000000 t other_mod_function\t[veth]
"""


def test_addresses_are_named_by_the_text_symbol_before_them(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/kallsyms").write_text(KALLSYMS)
    k = Kallsyms(tmp_path)
    k.resolve([0xFFFFFFFF81000105, 0xFFFFFFFF810001F0, 0xFFFFFFFFC0001010, 0xFFFFFFFFC0000F00])
    assert k.lookup(0xFFFFFFFF81000105) == "first_function"
    assert k.lookup(0xFFFFFFFF810001F0) == "first_function", "data symbols are skipped"
    assert k.lookup(0xFFFFFFFF81000305) == "weak_function"
    assert k.lookup(0xFFFFFFFFC0001010) == "mod_function"
    assert k.lookup(0xFFFFFFFFC0000F00) == "other_mod_function"
    assert k.lookup(0x1000) is None


def test_unreadable_kallsyms_names_nothing(tmp_path: Path) -> None:
    assert Kallsyms(tmp_path).lookup(0xFFFFFFFF81000105) is None


@root_only
def test_real_kernel_functions_are_found_from_inside_them() -> None:
    """Fifty functions spread over the kernel, each looked up one byte past its start: named as itself
    or as another name /proc/kallsyms gives the same address."""
    lines = [line.split() for line in Path("/proc/kallsyms").read_text().splitlines()]
    core = [(int(a, 16), name) for a, kind, name, *rest in lines if kind in "tTwW" and not rest]
    names_at: dict[int, set[str]] = {}
    for address, name in core:
        names_at.setdefault(address, set()).add(name)
    picks = sorted(names_at)[:: max(len(names_at) // 50, 1)][:50]
    k = Kallsyms()
    k.resolve(address + 1 for address in picks)
    for address in picks:
        assert k.lookup(address + 1) in names_at[address], hex(address)
