"""The per-packet half of a flow sample is declared once (``flow.Emit``): every layer from the
sampler's entry to the encoder takes exactly its values in its order, and every call between the
layers passes each one for itself, so that two values swapped cannot pack into a wrong sample."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hsflowd_py import flow_path
from hsflowd_py.flow import Emit, SampledPacket
from hsflowd_py.flow_path import FlowPath, SampledInterface
from hsflowd_py.sflow.flow_encoder import FlowEncoder

REPO = Path(__file__).resolve().parent.parent
DECLARED = list(inspect.signature(Emit.__call__).parameters.values())[1:]
NAMES = [p.name for p in DECLARED]

LAYERS: dict[str, tuple[Callable[..., Any], int]] = {
    "emit": (SampledInterface.emit, 1),
    "SampledPacket": (SampledPacket.__init__, 2),
    "_pack": (FlowPath._pack, 4),
    "pack_into": (FlowEncoder.pack_into, 6),
}
"""Each layer, and how many of its parameters (self included) come before the packet's values."""


def test_the_declaration_is_keyword_only_and_none_means_not_numbered() -> None:
    assert all(p.kind is p.KEYWORD_ONLY for p in DECLARED)
    assert [p.name for p in DECLARED if p.default is not p.empty] == ["sequence"] and DECLARED[-1].default is None


def test_every_layer_takes_the_declared_values_in_order() -> None:
    for name, (fn, before) in LAYERS.items():
        params = list(inspect.signature(fn).parameters.values())[before:]
        assert [p.name for p in params] == NAMES, name
        for mine, declared in zip(params, DECLARED, strict=True):
            resolved = name == "pack_into" and mine.name == "sequence"  # numbered by then: an int
            assert mine.annotation == ("int" if resolved else declared.annotation), (name, mine.name)
    fn, before = LAYERS["emit"]  # where samplers call in, by keyword only
    assert all(p.kind is p.KEYWORD_ONLY for p in list(inspect.signature(fn).parameters.values())[before:])


def _named(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def misplaced(call: ast.Call) -> list[str]:
    """The declared values a call to a layer passes by position under another name than their own
    (by keyword the language binds them to their own)."""
    fn, _ = LAYERS[_named(call.func) or ""]
    assert not any(isinstance(a, ast.Starred) for a in call.args) and all(k.arg for k in call.keywords)
    params = list(inspect.signature(fn).parameters)[1:]  # as bound: no self
    return [p for p, a in zip(params, call.args, strict=False) if p in NAMES and _named(a) != p]


def calls_of(path: Path, layers: set[str]) -> list[tuple[Path, ast.Call]]:
    tree = ast.parse(path.read_text())
    return [(path, n) for n in ast.walk(tree) if isinstance(n, ast.Call) and _named(n.func) in layers]


def test_calls_of_the_layers_pass_each_value_by_its_own_name() -> None:
    """A value passed by position must be a variable or attribute of the same name as the parameter
    it lands in; by keyword, the language binds it.  Either way a swap cannot go unnoticed.  The flow
    path's own calls, and every ``SampledPacket(...)`` in the tree (tests and benchmarks make them)."""
    calls = calls_of(Path(flow_path.__file__), set(LAYERS))
    assert {_named(c.func) for _, c in calls} == set(LAYERS) - {"emit"}  # the samplers call emit, by keyword
    for folder in ("hsflowd_py", "modules", "tests", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            if path != Path(flow_path.__file__):
                calls += calls_of(path, {"SampledPacket"})
    for path, call in calls:
        assert misplaced(call) == [], f"{path.name} line {call.lineno}: {ast.unparse(call)}"


def test_a_swap_is_caught() -> None:
    """The flow path's call of the encoder with two of its values swapped, as the old positional API
    would have packed silently."""
    ((_, call),) = calls_of(Path(flow_path.__file__), {"pack_into"})
    args = call.args
    i, j = (next(k for k, a in enumerate(args) if _named(a) == name) for name in ("sample_pool", "drops"))
    args[i], args[j] = args[j], args[i]
    assert misplaced(call) == ["sample_pool", "drops"]
