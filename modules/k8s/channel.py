"""A gRPC channel to a container runtime's unix socket (the CRI, containerd's own API): raw bytes in
and out, every call with a deadline, so that the callers' own codec (``proto.py``) parses replies
and names what is wrong with them."""

from __future__ import annotations

from typing import Any


class Malformed(Exception):
    """A reply that does not parse as the message it should be; the text names the field."""


class Channel:
    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        import grpc.aio  # python3-grpcio; imported here so that the agent starts without it

        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._channel: Any = grpc.aio.insecure_channel(f"unix://{socket_path}")

    async def call(self, method: str, request: bytes, namespace: str | None = None) -> bytes:
        """The reply to ``method`` (``/package.Service/Method``); ``namespace`` is containerd's
        ``containerd-namespace`` header.  Raises grpc.aio.AioRpcError (unreachable, unimplemented…)."""
        metadata = (("containerd-namespace", namespace),) if namespace else None
        rpc = self._channel.unary_unary(method)
        reply: bytes = await rpc(request, timeout=self.timeout_s, metadata=metadata)
        return reply

    async def close(self) -> None:
        await self._channel.close()


def rpc_error(err: Exception, socket_path: str) -> str:
    """One line for a failed call: grpc's status code and details, not its multi-line repr."""
    code = getattr(err, "code", None)
    details = getattr(err, "details", None)
    if callable(code) and callable(details):
        return f"{socket_path}: {code().name}: {details()}"
    return f"{socket_path}: {err!r}"
