"""The agent's self-telemetry over a unix socket, for ``hsflowd-py --status``.

The socket is made while the agent is still root and is readable by root only:
it reveals collectors and counters, nothing more.  Each connection gets one
JSON document and is closed.  ``json`` is imported by the first answer (and by ``query``), not
with the agent: most agents are never asked.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

DEFAULT_PATH = "/run/hsflowd-py/status.sock"


async def serve(path: str, status: Callable[[], dict[str, Any]]) -> asyncio.AbstractServer:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import json

        writer.write(json.dumps(status(), default=str).encode() + b"\n")
        try:
            await writer.drain()
        finally:
            writer.close()

    umask = os.umask(0o177)  # the socket is born 0600: no moment when another user may connect
    try:
        server = await asyncio.start_unix_server(answer, path)
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    return server


def query(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Ask a running agent for its counters; raises OSError when none answers."""
    import json

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))
