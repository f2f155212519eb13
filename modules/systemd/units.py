"""systemd's answers about units, checked before use.

The manager's ``ListUnits`` returns ``a(ssssssouso)``: name, description,
load state, active state, sub state, followed unit, unit object path, job id,
job type, job object path.  dbus-next unmarshals by the signature the message
carries, so a peer that sends a different signature (a proxy, a newer or a
broken manager) gives bodies of any shape: every entry is checked, and a bad
one is reported and skipped rather than trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LIST_UNITS_SIGNATURE = "a(ssssssouso)"
RUNNING_STATES = frozenset(("active", "reloading"))
"""ActiveState values of a service whose processes run (reloading is a running service re-reading its config)."""


class Malformed(ValueError):
    """An answer whose shape is not what systemd documents; the message says what and where."""


@dataclass(frozen=True)
class Unit:
    name: str
    load_state: str
    active_state: str
    path: str
    """The unit's D-Bus object path (``/org/freedesktop/systemd1/unit/dbus_2eservice``)."""

    @property
    def running_service(self) -> bool:
        return self.name.endswith(".service") and self.load_state == "loaded" and self.active_state in RUNNING_STATES


def parse_list_units(signature: str, body: list[Any]) -> tuple[list[Unit], list[str]]:
    """The units of a ListUnits reply, and one problem line per entry that had to be skipped.

    A reply that is not an array at all raises :class:`Malformed`.
    """
    if signature != LIST_UNITS_SIGNATURE or len(body) != 1 or not isinstance(body[0], list):
        raise Malformed(f"ListUnits answered signature {signature!r}, expected {LIST_UNITS_SIGNATURE!r}")
    units: list[Unit] = []
    problems: list[str] = []
    for i, entry in enumerate(body[0]):
        if not isinstance(entry, list) or len(entry) != 10 or not all(isinstance(x, str) for x in entry[:7]):
            problems.append(f"ListUnits entry {i} is not (ssssssouso): {_short(entry)}")
            continue
        name, _, load_state, active_state, _, _, path = entry[:7]
        if not name or not path.startswith("/"):
            problems.append(f"ListUnits entry {i} has no name or object path: {_short(entry)}")
            continue
        units.append(Unit(name, load_state, active_state, path))
    return units, problems


def parse_control_group(unit: str, signature: str, body: list[Any]) -> str:
    """The ControlGroup property from a Properties.Get reply (a variant holding a string).

    An empty string is a valid answer: systemd removes the cgroup of a service
    with no processes left (``active (exited)`` oneshots).
    """
    if signature != "v" or len(body) != 1:
        raise Malformed(f"ControlGroup of {unit}: reply signature {signature!r}, expected 'v'")
    variant = body[0]
    value = getattr(variant, "value", None)
    if getattr(variant, "signature", None) != "s" or not isinstance(value, str):
        raise Malformed(f"ControlGroup of {unit} is not a string: {_short(value)}")
    if value and (not value.startswith("/") or "\0" in value or ".." in value.split("/")):
        raise Malformed(f"ControlGroup of {unit} is not a cgroup path: {_short(value)}")
    return value


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
