"""systemd's D-Bus answers, checked before use: unit lists, ControlGroup values, change signals."""

from __future__ import annotations

import pytest
from dbus_next import Message, MessageType, Variant

from hsflowd_py.modules.systemd.bus import MANAGER, SYSTEMD, is_change
from hsflowd_py.modules.systemd.units import Malformed, Unit, parse_control_group, parse_list_units


def entry(name: str, load: str = "loaded", active: str = "active", sub: str = "running") -> list[object]:
    """One ListUnits entry as systemd 252 sends it (shape copied from ``busctl call … ListUnits``)."""
    path = "/org/freedesktop/systemd1/unit/" + name.replace(".", "_2e").replace("-", "_2d")
    return [name, "description", load, active, sub, "", path, 0, "", "/"]


def test_list_units_keeps_every_well_formed_entry() -> None:
    body = [[entry("dbus.service"), entry("tmp.mount"), entry("cron.service", active="inactive", sub="dead")]]
    units, problems = parse_list_units("a(ssssssouso)", body)
    assert problems == []
    assert [u.name for u in units] == ["dbus.service", "tmp.mount", "cron.service"]
    assert units[0].path == "/org/freedesktop/systemd1/unit/dbus_2eservice"


@pytest.mark.parametrize(
    ("unit", "running"),
    [
        (Unit("dbus.service", "loaded", "active", "/u/1"), True),
        (Unit("nginx.service", "loaded", "reloading", "/u/2"), True),
        (Unit("cron.service", "loaded", "inactive", "/u/3"), False),
        (Unit("broken.service", "loaded", "failed", "/u/4"), False),
        (Unit("starting.service", "loaded", "activating", "/u/5"), False),
        (Unit("gone.service", "not-found", "active", "/u/6"), False),
        (Unit("docker.socket", "loaded", "active", "/u/7"), False),
        (Unit("system.slice", "loaded", "active", "/u/8"), False),
    ],
)
def test_only_loaded_running_services_count(unit: Unit, running: bool) -> None:
    assert unit.running_service is running


def test_malformed_entries_are_reported_and_skipped() -> None:
    bad_arity = ["x.service", "d", "loaded", "active"]
    not_strings = ["y.service", "d", "loaded", 7, "running", "", "/p", 0, "", "/"]
    no_name = entry("")
    bad_path = [*entry("z.service")[:6], "relative/path", 0, "", "/"]
    body = [[bad_arity, entry("ok.service"), not_strings, "not even a list", no_name, bad_path]]
    units, problems = parse_list_units("a(ssssssouso)", body)
    assert [u.name for u in units] == ["ok.service"]
    assert len(problems) == 5
    assert problems[0].startswith("ListUnits entry 0 is not (ssssssouso): ['x.service'")
    assert "entry 4 has no name or object path" in problems[3]


@pytest.mark.parametrize(
    ("signature", "body"),
    [("a(ssss)", [[]]), ("a(ssssssouso)", []), ("a(ssssssouso)", ["not an array"]), ("s", ["x"])],
)
def test_a_reply_of_the_wrong_shape_is_refused_whole(signature: str, body: list[object]) -> None:
    with pytest.raises(Malformed, match="ListUnits answered signature"):
        parse_list_units(signature, body)


def test_control_group_values() -> None:
    path = "/system.slice/dbus.service"
    assert parse_control_group("dbus.service", "v", [Variant("s", path)]) == path
    assert parse_control_group("oneshot.service", "v", [Variant("s", "")]) == ""  # active (exited): no cgroup


@pytest.mark.parametrize(
    ("signature", "body", "reason"),
    [
        ("s", ["/system.slice/x.service"], "reply signature 's'"),
        ("v", [Variant("u", 5)], "is not a string"),
        ("v", [Variant("as", ["/a"])], "is not a string"),
        ("v", [Variant("s", "system.slice/x.service")], "is not a cgroup path"),
        ("v", [Variant("s", "/system.slice/../../etc")], "is not a cgroup path"),
        ("v", [], "reply signature 'v'"),
    ],
)
def test_control_group_malformed(signature: str, body: list[object], reason: str) -> None:
    with pytest.raises(Malformed, match=reason) as e:
        parse_control_group("x.service", signature, body)
    assert "x.service" in str(e.value)


def signal(path: str, interface: str, member: str, signature: str = "", body: list[object] | None = None) -> Message:
    return Message(
        message_type=MessageType.SIGNAL,
        sender=":1.0",
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body or [],
    )


def test_signals_that_ask_for_a_refresh() -> None:
    manager = "/org/freedesktop/systemd1"
    unit = "/org/freedesktop/systemd1/unit/web_2eservice"
    props = "org.freedesktop.DBus.Properties"
    changed = ["org.freedesktop.systemd1.Unit", {"ActiveState": Variant("s", "inactive")}, []]
    owner = "/org/freedesktop/DBus"
    assert is_change(signal(manager, MANAGER, "JobRemoved", "uoss", [7, "/j/7", "web.service", "done"]))
    assert is_change(signal(manager, MANAGER, "UnitNew", "so", ["web.service", unit]))
    assert is_change(signal(manager, MANAGER, "UnitRemoved", "so", ["web.service", unit]))
    assert is_change(signal(unit, props, "PropertiesChanged", "sa{sv}as", changed))
    assert is_change(signal(owner, "org.freedesktop.DBus", "NameOwnerChanged", "sss", [SYSTEMD, ":1.2", ":1.9"]))
    # not about services, or not a change at all
    assert not is_change(signal("/org/freedesktop/systemd1/unit/tmp_2emount", props, "PropertiesChanged", "sa{sv}as",
                                changed))  # fmt: skip
    assert not is_change(signal(owner, "org.freedesktop.DBus", "NameOwnerChanged", "sss", ["org.x", "", ":1.3"]))
    assert not is_change(signal(manager, MANAGER, "Reloading", "b", [True]))
    reply = Message(message_type=MessageType.METHOD_RETURN, reply_serial=3, destination=":1.5")
    assert not is_change(reply)
