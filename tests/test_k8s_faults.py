"""A runtime that is absent, slow or answers garbage: the agent logs it once, retries with backoff,
says when the runtime is back, and never shows a traceback.  The misbehaving runtime is a real
gRPC server on a unix socket (grpcio's), answering the CRI method names with what each test sets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from test_docker_agent import Run

grpc = pytest.importorskip("grpc", reason="python3-grpcio")

EMPTY_LIST = b""
"""A ListPodSandboxResponse with no pods (every field at its default)."""


class FakeRuntime:
    """Answers ListPodSandbox with ``self.reply`` after ``self.delay`` seconds."""

    def __init__(self, socket: Path) -> None:
        self.reply = EMPTY_LIST
        self.delay = 0.0
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers([self])
        self.server.add_insecure_port(f"unix://{socket}")
        self.server.start()
        self.released = threading.Event()

    def service(self, details: Any) -> Any:
        if details.method != "/runtime.v1.RuntimeService/ListPodSandbox":
            return None
        return grpc.unary_unary_rpc_method_handler(self._list)

    def _list(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        if self.delay:
            self.released.wait(self.delay)
        return self.reply

    def stop(self) -> None:
        self.released.set()
        self.server.stop(0)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRuntime]:
    f = FakeRuntime(tmp_path / "cri.sock")
    yield f
    f.stop()


def start(tmp_path: Path, socket: Path) -> Run:
    return Run(tmp_path, socket, polling=1, block=f"k8s {{ unixsock = {socket} }}")


def lines(run: Run, text: str) -> list[str]:
    return [line for line in run.stderr().splitlines() if text in line]


def test_absent_runtime_is_logged_once_and_retried(tmp_path: Path) -> None:
    run = start(tmp_path, tmp_path / "no-such.sock")
    try:
        run.wait_for("the warning", 10, lambda: lines(run, "k8s: runtime unavailable"))
        run.pump(4)  # backoff 1 s, 2 s: at least two more attempts
        assert len(lines(run, "k8s: runtime unavailable")) == 1
        assert "UNAVAILABLE" in lines(run, "k8s: runtime unavailable")[0]
        assert run.agent.p.poll() is None and "Traceback" not in run.stderr()
        assert run.hosts, "the host is still reported"
    finally:
        run.stop()


def test_garbage_then_good_replies(tmp_path: Path, fake: FakeRuntime) -> None:
    fake.reply = b"\x0a\x05ab"  # items: 5 bytes announced, 2 there
    run = start(tmp_path, tmp_path / "cri.sock")
    try:
        got = run.wait_for("the warning", 10, lambda: lines(run, "k8s: runtime unavailable"))
        assert "ListPodSandboxResponse.items: length 5 past the end" in got[0]
        calls = fake.calls
        run.pump(3.5)
        assert fake.calls > calls, "retried"
        assert len(lines(run, "k8s: runtime unavailable")) == 1
        fake.reply = EMPTY_LIST
        run.wait_for("the runtime back", 20, lambda: lines(run, "k8s: runtime at"))
        assert "Traceback" not in run.stderr()
    finally:
        run.stop()


def test_slow_runtime_hits_the_deadline(tmp_path: Path, fake: FakeRuntime) -> None:
    fake.delay = 30
    run = start(tmp_path, tmp_path / "cri.sock")
    try:
        got = run.wait_for("the warning", 12, lambda: lines(run, "k8s: runtime unavailable"))
        assert "DEADLINE_EXCEEDED" in got[0]
        assert run.agent.p.poll() is None and "Traceback" not in run.stderr()
    finally:
        fake.released.set()
        run.stop()
