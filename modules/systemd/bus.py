"""The system D-Bus, as far as this module talks to systemd over it (dbus-next 0.2.3, asyncio).

Only the low-level API is used: the high-level proxies introspect every
object first, which would cost one round trip per unit.  Calls carry explicit
signatures and a timeout, since dbus-next waits forever for a reply that a
restarting bus never sends.

Signals, and why each one:

- ``Manager.Subscribe`` makes systemd emit unit signals at all (it sends them
  only while some client is subscribed); the subscription dies with our
  connection, so it is renewed on every connection;
- ``JobRemoved``: a start, stop or restart job finished;
- ``UnitNew``/``UnitRemoved``: a unit was loaded or unloaded (transient units
  from ``systemd-run`` appear this way);
- ``PropertiesChanged`` of ``org.freedesktop.systemd1.Unit`` on a service: its
  ActiveState changed without a job (a service that exits or crashes);
- ``NameOwnerChanged`` of ``org.freedesktop.systemd1``: systemd re-executed or
  reconnected to the bus, and our subscription is gone with its old owner.

Any of them only asks for a refresh: the unit list is always re-read, never
patched from signal contents, so a lost or reordered signal costs nothing but
latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from dbus_next import BusType, Message, MessageType
from dbus_next.aio import MessageBus

from .units import Unit, parse_control_group, parse_list_units

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT_PATH_PREFIX = "/org/freedesktop/systemd1/unit/"
SERVICE_PATH_SUFFIX = "_2eservice"
"""Object paths escape every byte outside [A-Za-z0-9] as _XX: ``dbus.service`` is ``dbus_2eservice``."""

SYSTEM_BUS_DEFAULT = "unix:path=/var/run/dbus/system_bus_socket"
"""Where dbus-next, like libdbus, looks when DBUS_SYSTEM_BUS_ADDRESS is not set."""
CALL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0

MATCH_RULES = (
    f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER}',member='JobRemoved'",
    f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER}',member='UnitNew'",
    f"type='signal',sender='{SYSTEMD}',path='{MANAGER_PATH}',interface='{MANAGER}',member='UnitRemoved'",
    f"type='signal',sender='{SYSTEMD}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
    f"arg0='org.freedesktop.systemd1.Unit'",
    f"type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',"
    f"arg0='{SYSTEMD}'",
)


class BusFailure(Exception):
    """The bus or systemd did not answer as it should; the connection is to be dropped and retried."""


class CallError(BusFailure):
    """A call answered with a D-Bus error (the unit went away meanwhile, systemd is not on the bus)."""


def is_change(msg: Message) -> bool:
    """Whether a signal may change the set of running services (see the module docstring)."""
    if msg.message_type is not MessageType.SIGNAL:
        return False
    if msg.member == "PropertiesChanged":
        return bool(msg.path and msg.path.startswith(UNIT_PATH_PREFIX) and msg.path.endswith(SERVICE_PATH_SUFFIX))
    if msg.member == "NameOwnerChanged":
        return bool(msg.body and msg.body[0] == SYSTEMD)
    return msg.interface == MANAGER and msg.member in ("JobRemoved", "UnitNew", "UnitRemoved")


class SystemdBus:
    """One connection to the system bus; ``closed`` resolves when it is lost."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls, on_change: Callable[[], None], address: str | None = None) -> SystemdBus:
        """Connect, subscribe to systemd's signals; ``on_change`` is called for each relevant one."""
        address = address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS_DEFAULT)
        _probe(address)
        bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM)
        try:
            await asyncio.wait_for(bus.connect(), CONNECT_TIMEOUT_S)
        except BaseException:
            _discard(bus)
            raise
        self = cls(bus)

        def handler(msg: Message) -> None:
            if is_change(msg):
                on_change()

        bus.add_message_handler(handler)
        try:
            for rule in MATCH_RULES:
                await self.call(
                    "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [rule]
                )
            await self.call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe")
        except BaseException:
            await self.close()
            raise
        return self

    async def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> Message:
        """A method call's reply; an error reply raises CallError, a timeout or a lost connection BusFailure."""
        if not self.bus.connected:  # dbus-next would wait forever for the answer to a call on a closed bus
            raise BusFailure(f"{interface}.{member}: the connection is closed")
        msg = Message(
            destination=destination, path=path, interface=interface, member=member, signature=signature, body=body or []
        )
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), CALL_TIMEOUT_S)
        except TimeoutError:
            raise BusFailure(f"{interface}.{member} got no answer within {CALL_TIMEOUT_S:g} s") from None
        if reply is None:
            raise BusFailure(f"{interface}.{member}: the connection closed before the answer")
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise CallError(f"{interface}.{member} failed: {reply.error_name}: {text}")
        return reply

    async def list_units(self) -> tuple[list[Unit], list[str]]:
        """Every unit systemd has loaded, and the entries it had to skip (units.Malformed on a broken reply)."""
        reply = await self.call(SYSTEMD, MANAGER_PATH, MANAGER, "ListUnits")
        return parse_list_units(reply.signature, reply.body)

    async def control_group(self, unit: Unit) -> str:
        reply = await self.call(
            SYSTEMD,
            unit.path,
            "org.freedesktop.DBus.Properties",
            "Get",
            "ss",
            ["org.freedesktop.systemd1.Service", "ControlGroup"],
        )
        return parse_control_group(unit.name, reply.signature, reply.body)

    async def closed(self) -> None:
        """Returns (never raises) when the connection is gone.

        Shielded: every waiter shares dbus-next's one disconnect future, and
        cancelling a waiter would otherwise cancel that future for all.
        """
        with contextlib.suppress(Exception):
            await asyncio.shield(self.bus.wait_for_disconnect())

    async def close(self) -> None:
        """Disconnect; pending calls fail at once (dbus-next settles them when it sees the socket close)."""
        with contextlib.suppress(Exception):
            self.bus.disconnect()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed(), 1.0)
        finally:
            _discard(self.bus)


def _discard(bus: MessageBus) -> None:
    """Free the connection's socket now.

    dbus-next's ``disconnect`` only shuts the socket down and leaves closing it
    to the garbage collector, which would let descriptors pile up across many
    reconnections while the bus is restarting.  The socket's file object must
    be closed too: a socket with an open ``makefile`` keeps its descriptor.
    """
    sock = getattr(bus, "_sock", None)
    if sock is None:
        return
    with contextlib.suppress(Exception):
        asyncio.get_running_loop().remove_reader(sock.fileno())
    for f in (getattr(bus, "_stream", None), sock):
        with contextlib.suppress(Exception):
            f.close()


def _probe(address: str) -> None:
    """Raise OSError unless something accepts connections at a unix-socket bus address.

    dbus-next's MessageBus connects in its constructor and, when that fails,
    leaves its socket in a reference cycle through the exception, to be
    closed by the garbage collector much later; while the bus is down and
    connections are retried, a probe with a socket of our own fails cleanly
    instead.  Other transports (tcp) are left to dbus-next.
    """
    failure: OSError | None = None
    for transport in address.split(";"):
        kind, _, options = transport.partition(":")
        if kind != "unix":
            return
        params = dict(kv.partition("=")[::2] for kv in options.split(","))
        path = params.get("path") or ("\0" + params["abstract"] if "abstract" in params else None)
        if path is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
                return
            except OSError as e:
                failure = OSError(e.errno, f"cannot connect to the system bus at {address}: {e.strerror}")
    if failure is not None:
        raise failure
