"""The module against a real dbus-daemon whose systemd answers badly, then goes away and comes back.

Real systemd never sends a malformed answer, so the peer that owns
``org.freedesktop.systemd1`` here is this test's own, on a private
dbus-daemon: it answers ListUnits, Properties.Get and Subscribe the way the
test tells it to, and emits JobRemoved when told.  The agent's side is the
real module in a real Agent, connected through DBUS_SYSTEM_BUS_ADDRESS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dbus_next import Message, MessageType, Variant
from dbus_next.aio import MessageBus

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.modules.systemd import SystemdModule
from hsflowd_py.modules.systemd.bus import MANAGER, MANAGER_PATH, SYSTEMD, SystemdBus

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs Debian's dbus-daemon")

LIST_UNITS = "a(ssssssouso)"


def unit(name: str) -> list[Any]:
    return [name, "", "loaded", "active", "running", "", "/org/freedesktop/systemd1/unit/" + name.replace(".", "_2e"),
            0, "", "/"]  # fmt: skip


class Daemon:
    """A private dbus-daemon on a unix socket path, started and stopped by pid."""

    def __init__(self, socket_path: Path) -> None:
        self.address = f"unix:path={socket_path}"
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={self.address}", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().startswith(b"unix:")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Systemd:
    """The peer that owns systemd's name: answers as ``list_units``/``control_groups`` say."""

    def __init__(self) -> None:
        self.list_signature = LIST_UNITS
        self.list_body: list[Any] = [[]]
        self.control_groups: dict[str, Variant] = {}
        self.bus: MessageBus | None = None

    async def connect(self, address: str) -> None:
        self.bus = await MessageBus(bus_address=address).connect()
        self.bus.add_message_handler(self.answer)
        await self.bus.request_name(SYSTEMD)

    def answer(self, msg: Message) -> Message | None:
        if msg.message_type is not MessageType.METHOD_CALL or msg.destination != SYSTEMD:
            return None
        if msg.member == "ListUnits":
            return Message.new_method_return(msg, self.list_signature, self.list_body)
        if msg.member == "Subscribe":
            return Message.new_method_return(msg)
        if msg.member == "Get" and msg.path in self.control_groups:
            return Message.new_method_return(msg, "v", [self.control_groups[msg.path]])
        return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", f"no unit at {msg.path}")

    async def close(self) -> None:
        if self.bus is not None:
            await SystemdBus(self.bus).close()

    def job_removed(self, name: str) -> None:
        assert self.bus is not None
        self.bus.send(Message.new_signal(MANAGER_PATH, MANAGER, "JobRemoved", "uoss", [1, "/j/1", name, "done"]))

    def serve(self, *names: str, broken_cgroup: str | None = None) -> None:
        self.list_signature = LIST_UNITS
        self.list_body = [[unit(n) for n in names]]
        self.control_groups = {unit(n)[6]: Variant("s", f"/system.slice/{n}") for n in names}
        if broken_cgroup is not None:
            self.control_groups[unit(broken_cgroup)[6]] = Variant("u", 7)


async def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_bad_answers_are_skipped_and_a_lost_bus_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    socket_path = tmp_path / "bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={socket_path}")
    settings = parse_config("sflow { collector { ip = 127.0.0.1 } systemd { refreshVMs = 60 } }")
    agent = Agent(settings, auto_path=str(tmp_path / "auto"))
    module = SystemdModule(agent.context, settings)
    daemons = [Daemon(socket_path)]

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    async def scenario() -> None:
        peer = Systemd()
        await peer.connect(daemons[0].address)
        empty_name = ["", "", "loaded", "active", "running", "", "/u/empty", 0, "", "/"]
        peer.serve("a.service", "b.service", broken_cgroup="b.service")
        peer.list_body[0].append(empty_name)
        await module.start()
        await until(lambda: set(module.services) == {"a.service"}, 3, "a.service tracked, b.service skipped")
        assert (3, module.services["a.service"].ds_index) in agent.pollers
        assert module.services["a.service"].cgroup == "/system.slice/a.service"

        # a change signal: found long before the 60 s refresh
        peer.serve("a.service", "b.service", "c.service", broken_cgroup="b.service")
        peer.job_removed("c.service")
        await until(lambda: "c.service" in module.services, 2, "c.service after JobRemoved")

        # a reply of the wrong shape: logged once, nothing changes
        peer.list_signature, peer.list_body = "a(ss)", [[["a.service", "oops"]]]
        for _ in range(3):
            peer.job_removed("a.service")
            await asyncio.sleep(0.4)
        assert set(module.services) == {"a.service", "c.service"}

        # the bus goes away: known services stay polled; it comes back: the list is read again
        daemons[0].stop()
        await until(lambda: module.bus is None, 3, "the lost connection noticed")
        await peer.close()
        assert {(3, s.ds_index) for s in module.services.values()} <= agent.pollers.keys()
        daemons.append(Daemon(socket_path))
        peer = Systemd()
        await peer.connect(daemons[1].address)
        peer.serve("a.service")
        await until(lambda: set(module.services) == {"a.service"}, 6, "re-listed after the bus came back")
        await module.stop()
        await peer.close()
        assert not agent.pollers

    try:
        with caplog.at_level(logging.INFO, logger="hsflowd.systemd"):
            asyncio.run(scenario())
    finally:
        for d in daemons:
            d.stop()
    lines = warnings()
    assert sum("skipping b.service: ControlGroup of b.service is not a string" in w for w in lines) == 1, lines
    assert sum("ListUnits entry 2 has no name or object path" in w for w in lines) == 1, lines
    assert sum("skipping a malformed answer: ListUnits answered signature 'a(ss)'" in w for w in lines) == 1, lines
    assert sum("D-Bus unavailable" in w for w in lines) == 1, lines
    assert any("D-Bus answers again" in r.getMessage() for r in caplog.records)
