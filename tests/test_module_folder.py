"""Adding a module is adding a folder: a throwaway module, written into a temporary folder that is
searched for modules the way ``modules/`` is, gets its block parsed, printed by ``--check`` and its
errors named, and is started by the core when the file has its block -- with no core file edited."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsflowd_py import module, modules
from hsflowd_py.cli import main
from hsflowd_py.config import ConfigError, blocks, parse_config

SETTINGS = '''
    """blink {}: a module that exists only in this test."""
    from __future__ import annotations

    from dataclasses import dataclass, field
    from typing import ClassVar

    from hsflowd_py.config import values as v
    from hsflowd_py.config.blocks import module_block
    from hsflowd_py.config.schema import conf_key


    @module_block("blink", repeat=True, unsupported=("strobe",))
    @dataclass(frozen=True)
    class BlinkSettings:
        REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ("rate",)

        rate: int = field(default=1, metadata=conf_key("rate", v.integer(1, 10)))
        colour: str = field(default="amber", metadata=conf_key("colour", v.choice("amber", "green")))
'''

MODULE = '''
    """The module itself: it imports its settings the usual way."""
    from hsflowd_py.module import Module, register

    from .settings import BlinkSettings


    @register
    class Blink(Module):
        name = "blink"
        settings_type = BlinkSettings
'''

C = "collector { ip = 127.0.0.1 }"


@pytest.fixture
def blink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The folder ``modules/blink`` would be, in a folder searched after ``modules/``; whatever it
    registers is forgotten after the test."""
    folder = tmp_path / "more-modules" / "blink"
    folder.mkdir(parents=True)
    (folder / "settings.py").write_text(textwrap.dedent(SETTINGS))
    (folder / "__init__.py").write_text(textwrap.dedent(MODULE))
    blocks.declared_blocks()  # the real modules' blocks first, so the copy restored afterwards has them
    monkeypatch.setattr(blocks, "_DECLARED", dict(blocks._DECLARED))
    monkeypatch.setattr(module, "MODULES", dict(module.MODULES))
    monkeypatch.setattr(modules, "__path__", [*modules.__path__, str(folder.parent)])
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("hsflowd_py.modules.blink")]:
        del sys.modules[name]


def test_without_the_folder_the_block_is_unknown_as_any_other() -> None:
    with pytest.raises(ConfigError, match=r"<string>:1: unknown key 'blink' in block 'sflow'"):
        parse_config(f"sflow {{ {C} blink {{ rate = 2 }} }}")


def test_the_folder_alone_declares_its_block(blink: Path) -> None:
    settings = parse_config(f"sflow {{ {C} blink {{ rate = 2 }} blink {{ rate = 3 colour = GREEN }} }}")
    cls = sys.modules["hsflowd_py.modules.blink.settings"].BlinkSettings
    assert settings.blink == (cls(rate=2), cls(rate=3, colour="green"))
    assert parse_config(f"sflow {{ {C} }}").blink == ()
    assert "hsflowd_py.modules.blink" not in sys.modules  # parsed before the module was imported
    assert parse_config("\n".join(settings.describe())) == settings


def test_its_errors_name_file_line_block_and_key(blink: Path) -> None:
    cases = {
        "blink { rate = 11 }": "<string>:2: bad value '11' for key 'rate' in block 'blink': must be between 1 and 10",
        "blink { shade = 1 }": "<string>:2: unknown key 'shade' in block 'blink'",
        "blink { colour = green }": "<string>:2: block 'blink' needs 'rate'",
        "blink { strobe = on rate = 1 }": "<string>:2: key 'strobe' in block 'blink' is not supported by hsflowd-py",
    }
    for body, message in cases.items():
        with pytest.raises(ConfigError) as caught:
            parse_config(f"sflow {{ {C}\n {body} }}")
        assert str(caught.value).startswith(message)
    skipped = parse_config(f"sflow {{ {C}\n blink {{ strobe = on rate = 4 }} }}", skip_unsupported=True)
    assert [b.rate for b in skipped.blink] == [4]
    assert skipped.warnings == ("<string>:2: key 'strobe' in block 'blink' is not supported by hsflowd-py; skipped",)


def test_check_prints_the_block(blink: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = blink / "hsflowd.conf"
    conf.write_text(f"sflow {{ {C} blink {{ rate = 7 }} }}\n")
    assert main(["-f", str(conf), "--check", "-u", "6f1e4d0a-3c39-4e53-9d1a-0c5e0d3c8a11"]) == 0
    assert "  blink { rate = 7 colour = amber }\n" in capsys.readouterr().out


def test_the_core_finds_and_wants_the_module(blink: Path) -> None:
    found = module.discover()
    assert found["blink"].wanted(parse_config(f"sflow {{ {C} blink {{ rate = 2 }} }}"))
    assert not found["blink"].wanted(parse_config(f"sflow {{ {C} }}"))
    settings_module = sys.modules["hsflowd_py.modules.blink.settings"]
    assert found["blink"].settings_type is settings_module.BlinkSettings  # one class, parser's and module's
