"""The Docker Engine API through the Docker SDK (python3-docker 5.0.3), driven from asyncio.

Why threads rather than HTTP spoken over the unix socket with asyncio: the SDK is the supported
client (it negotiates the API version, knows the unix-socket transport and the error replies),
and what the module asks of the engine is small: one long-lived event stream, a list and an
inspect per container start, and stats calls only for containers whose kernel counters are out
of reach.  So the blocking SDK runs on threads the module owns:

* the event stream is read on its own thread, which hands each line to the asyncio loop with
  ``call_soon_threadsafe`` into a bounded queue (:class:`EventFeed`).  A queue that overflows
  drops the event and counts it, and the module then re-lists the engine's containers: a lost
  ``die`` must not leave a ghost, a lost ``start`` must not leave a container unreported;
* requests (version, list, inspect) run in order on one "docker-api" thread, so one SDK
  session is never used by two requests at once;
* stats calls (the fallback, which the engine answers slowly: it waits for a second CPU sample)
  run on a separate small pool, each thread with a client of its own, so that they never delay
  an inspect.

Events are read undecoded and split into lines here: the SDK's own decoder keeps appending to its
buffer until the text parses, so a single malformed event would swallow every later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger("hsflowd.docker")

T = TypeVar("T")

EVENT_FILTERS = {
    "type": ["container", "network"],
    "event": ["start", "die", "destroy", "pause", "unpause", "rename", "connect", "disconnect"],
}
"""Container life cycle, and network (dis)connections, which change a container's interfaces."""

QUEUE_LIMIT = 10000
REQUEST_TIMEOUT_S = 15
STATS_THREADS = 4


class EngineUnavailable(Exception):
    """The engine cannot be reached or went away: the module reconnects and resynchronises."""


class Gone(Exception):
    """The container no longer exists (404): nothing to report."""


class Refused(Exception):
    """The engine answered with an error (other than 404)."""


class Malformed(Exception):
    """A reply that is not what the Engine API documents."""


class EventFeed:
    """Events from the engine's stream, delivered on the loop into a bounded queue.

    ``take()`` returns the queued events, waiting for at least one; an empty list means the
    stream ended (the engine went away), after the events already queued were taken.
    ``overflowed`` is set when an event was dropped; whoever reads it resets it and resyncs.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = QUEUE_LIMIT) -> None:
        self._loop = loop
        self._limit = limit
        self._queue: deque[Any] = deque()
        self._ready = asyncio.Event()
        self.ended = False
        self.end_reason = ""
        self.overflowed = False
        self.dropped = 0

    # called on the stream thread
    def feed_line(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = Malformed(f"event is not JSON: {line[:120]!r}")
        self._post(self._deliver, event)

    def feed_end(self, reason: str) -> None:
        self._post(self._end, reason)

    def _post(self, fn: Callable[[Any], None], arg: Any) -> None:
        # RuntimeError: the loop closed (agent exiting), nobody is listening any more
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(fn, arg)

    # on the loop
    def _deliver(self, event: Any) -> None:
        if len(self._queue) >= self._limit:
            self.dropped += 1
            self.overflowed = True
        else:
            self._queue.append(event)
        self._ready.set()

    def _end(self, reason: str) -> None:
        self.ended = True
        self.end_reason = reason
        self._ready.set()

    def discard(self) -> None:
        self._queue.clear()

    async def take(self) -> list[Any]:
        while not self._queue and not self.ended and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        out = list(self._queue)
        self._queue.clear()
        return out


def _lines(chunks: Any, feed: EventFeed) -> None:
    """Split the stream into lines (one JSON object each) and feed them; runs on the stream thread."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                feed.feed_line(line)
    if pending.strip():
        feed.feed_line(pending)


class Engine:
    """One connection to the engine at ``socket_path``: an event stream and requests."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._api: Any = None
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._requests = ThreadPoolExecutor(1, thread_name_prefix="docker-api")
        self._stats = ThreadPoolExecutor(STATS_THREADS, thread_name_prefix="docker-stats")
        self._stats_local = threading.local()
        self._stats_clients: list[Any] = []
        self._generation = 0
        """Bumped by close(): the stats threads' clients belong to the connection that was closed."""

    # ------------------------------------------------------------ threads

    async def _on(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, _translated, fn, *args)

    def _connected(self) -> Any:
        if self._api is None:
            raise EngineUnavailable("not connected")
        return self._api

    # ------------------------------------------------------------ the API

    async def subscribe(self) -> EventFeed:
        """Connect and subscribe to events; returns once the engine has accepted the subscription."""
        self.close()
        feed = EventFeed(asyncio.get_running_loop())
        self._api, self._stream = await self._on(self._requests, self._open, feed)
        self._thread = threading.Thread(target=self._read, args=(self._stream, feed), name="docker-events", daemon=True)
        self._thread.start()
        return feed

    def _open(self, feed: EventFeed) -> tuple[Any, Any]:
        try:
            import docker  # python3-docker; imported here so that hosts without it only miss this module
        except ImportError as err:
            raise EngineUnavailable(f"the Docker SDK (python3-docker) is not installed: {err}") from None
        api = docker.APIClient(base_url=f"unix://{self.socket_path}", version="auto", timeout=REQUEST_TIMEOUT_S)
        return api, api.events(filters=EVENT_FILTERS, decode=False)

    @staticmethod
    def _read(stream: Any, feed: EventFeed) -> None:
        try:
            _lines(stream, feed)
            feed.feed_end("the event stream ended")
        except Exception as err:  # anything the transport raises ends this connection, not the agent
            feed.feed_end(f"the event stream failed: {err}")

    async def list_running(self) -> list[str]:
        """Ids of the running containers."""
        reply = await self._on(self._requests, self._connected().containers)
        if not isinstance(reply, list):
            raise Malformed(f"container list is a {type(reply).__name__}, not a list")
        ids = []
        for item in reply:
            cid = item.get("Id") if isinstance(item, dict) else None
            if not valid_id(cid):
                raise Malformed(f"container list entry without a valid Id: {str(item)[:120]}")
            ids.append(cid)
        return ids

    async def inspect(self, cid: str) -> dict[str, Any]:
        reply = await self._on(self._requests, self._connected().inspect_container, cid)
        if not isinstance(reply, dict):
            raise Malformed(f"inspect of {cid[:12]} is a {type(reply).__name__}, not an object")
        return reply

    def _stats_client(self, version: str) -> Any:
        """The calling stats thread's own client."""
        local = self._stats_local
        if getattr(local, "generation", None) != self._generation:
            import docker

            local.api = docker.APIClient(base_url=f"unix://{self.socket_path}", version=version)
            local.generation = self._generation
            self._stats_clients.append(local.api)
        return local.api

    async def stats(self, cid: str) -> dict[str, Any]:
        version = self._connected().api_version
        reply = await self._on(self._stats, lambda: self._stats_client(version).stats(cid, stream=False))
        if not isinstance(reply, dict):
            raise Malformed(f"stats of {cid[:12]} is a {type(reply).__name__}, not an object")
        return reply

    def close(self) -> None:
        """Drop the connection; the stream thread ends when its socket is shut down."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception as err:  # already closed by the peer
                log.debug("docker: closing the event stream: %s", err)
        api, self._api = self._api, None
        if api is not None:
            api.close()
        self._generation += 1
        for client in self._stats_clients:
            client.close()
        self._stats_clients.clear()

    def shutdown(self) -> None:
        self.close()
        self._requests.shutdown(wait=False, cancel_futures=True)
        self._stats.shutdown(wait=False, cancel_futures=True)


def valid_id(cid: Any) -> bool:
    """A full container id: 64 hex digits (its first 32 give the container's UUID)."""
    if not isinstance(cid, str) or len(cid) != 64:
        return False
    try:
        bytes.fromhex(cid)
    except ValueError:
        return False
    return True


def _translated(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` on a worker thread, turning the SDK's and the transport's errors into ours."""
    import requests

    try:
        import docker.errors as derr
    except ImportError as err:
        raise EngineUnavailable(f"the Docker SDK (python3-docker) is not installed: {err}") from None
    try:
        return fn(*args)
    except derr.NotFound as err:
        raise Gone(str(err)) from None
    except derr.APIError as err:
        raise Refused(str(err)) from None
    except ValueError as err:  # a body that is not JSON (requests' JSONDecodeError is an OSError too)
        raise Malformed(f"reply is not JSON: {err}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, derr.DockerException, OSError) as err:
        raise EngineUnavailable(str(err) or type(err).__name__) from None
