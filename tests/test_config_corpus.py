"""Real-world hsflowd.conf files (tests/fixtures/hsflowd-conf/README.md says where each comes from)
through ``hsflowd-py --check``: every one is accepted, the files that configure modules this agent
lacks with ``--skip-unsupported`` and a warning naming each block, and without it refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hsflowd_py.cli import main

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
SHARED = PROJECT.parent / "shared"
CORPUS = HERE / "fixtures" / "hsflowd-conf"

UNSUPPORTED = {
    "start-sh-ovs-dropmon.conf": ["ovs"],
}
"""Files naming blocks of modules hsflowd-py does not have."""

REFUSED = {"host-sflow-linux-default-sonic.conf": "block 'sflow' needs 'collector' or 'dns-sd'"}
"""Refused as by the established agent (see the corpus README)."""


def fenced_examples(markdown: Path) -> list[str]:
    """Code blocks of ``markdown`` whose first line that is not a comment starts ``sflow {``."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", markdown.read_text(), flags=re.M | re.S)
    found = []
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if lines and re.match(r"\s*sflow\s*\{", lines[0]):
            found.append(block)
    return found


def corpus() -> list[Path]:
    files = sorted(CORPUS.glob("*.conf"))
    files += sorted(SHARED.glob("vectors/*.conf"))
    files += [PROJECT / "hsflowd.conf.example", PROJECT / "packaging" / "hsflowd.conf"]
    return files


def check(path: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str, str]:
    code = main(["-f", str(path), "--check", *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_corpus_is_all_there() -> None:
    names = {p.name for p in corpus()}
    assert len(names) >= 18
    assert {"host-sflow-linux-default.conf", "start-sh-default.conf", "hsflowd.conf.example"} <= names


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_check_accepts_the_file(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if path.name in REFUSED:
        code, _, err = check(path, capsys, "--skip-unsupported")
        assert code == 1 and REFUSED[path.name] in err
        return
    blocks = UNSUPPORTED.get(path.name, [])
    code, out, err = check(path, capsys, *(["--skip-unsupported"] if blocks else []))
    assert (code, err) == (0, ""), err
    assert out.startswith(f"# effective settings from {path}")
    assert re.search(r"^# host UUID: [0-9a-f-]{36} \(from .+\)$", out, flags=re.M)
    warned = re.findall(r"^# warning: .*block '(\w+)' is not supported by hsflowd-py; skipped$", out, flags=re.M)
    assert warned == blocks
    if blocks:
        code, _, err = check(path, capsys)
        assert code == 1 and f"block {blocks[0]!r} is not supported by hsflowd-py" in err
        assert "--skip-unsupported" in err


@pytest.mark.parametrize("markdown", [PROJECT / "README.md", SHARED / "REFERENCE.md"], ids=lambda p: p.name)
def test_check_accepts_every_documented_example(
    markdown: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not markdown.exists():
        pytest.skip(f"{markdown} not here")
    examples = fenced_examples(markdown)
    assert examples, f"no sflow {{ }} example found in {markdown}"
    for i, example in enumerate(examples):
        path = tmp_path / f"example{i}.conf"
        path.write_text(example)
        code, _, err = check(path, capsys)
        assert (code, err) == (0, ""), f"{markdown.name} example {i}:\n{example}\n{err}"
