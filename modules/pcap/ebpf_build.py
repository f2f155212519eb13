"""Compile and load the eBPF sampler, then hand it to the agent and exit.

bcc compiles with LLVM, which makes a process about 130 MB larger and never gives it back.
So the agent runs this file as a short-lived child (``python ebpf_build.py SOCKET_FD
SOURCE CFLAG...``): it compiles ``sampler.bpf.c``, loads both programs into the kernel and
sends their descriptors and the maps' over the Unix socket it was given (SCM_RIGHTS).
Descriptors in flight outlive their sender, so the agent receives them after this process
has gone; the kernel keeps the programs and maps for as long as the agent holds them.

Only the standard library and bcc are imported here.  The reply is one datagram: a JSON
object (``{"ok": true, "maps": {...}}`` or ``{"ok": false, "error": "..."}``) with the
descriptors attached in the order of ``FDS``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys

FDS = ("hsflowd_ingress", "hsflowd_egress", "config", "counts", "samples", "clock", "wake")


def _reply(sock: socket.socket, message: dict[str, object], fds: list[int]) -> None:
    import json  # here: the agent imports this file for FDS, and has no other use for json

    socket.send_fds(sock, [json.dumps(message).encode()], fds)


def build(source: str, cflags: list[str]) -> tuple[dict[str, object], list[int], object]:
    """Load the programs; returns the reply, the descriptors and the BPF object that owns them."""
    from bcc import BPF  # the whole point of this process

    bpf = BPF(src_file=source.encode(), cflags=cflags)
    fds = [bpf.load_func(name.encode(), BPF.SCHED_CLS).fd for name in FDS[:2]]
    maps = {}
    for name in FDS[2:]:
        table = bpf[name.encode()]
        fds.append(table.map_fd)
        maps[name] = {"max_entries": table.max_entries}
        if name != "samples":
            leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU tables: Leaf is one per CPU
            maps[name].update(key_size=ctypes.sizeof(table.Key), value_size=ctypes.sizeof(leaf))
    return {"ok": True, "maps": maps}, fds, bpf


def _headers_hint() -> str:
    build_dir = f"/lib/modules/{os.uname().release}/build"
    if os.path.exists(build_dir) or os.path.exists("/sys/kernel/kheaders.tar.xz"):
        return ""
    return f"; no kernel headers for {os.uname().release} ({build_dir} is missing)"


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    source, cflags = argv[2], argv[3:]
    try:
        reply, fds, owner = build(source, cflags)
    except ImportError as e:
        _reply(sock, {"ok": False, "error": f"bcc is not installed ({e})"}, [])
        return 1
    except Exception as e:  # compiler and loader errors: report, the agent falls back
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]  # MemoryError() has no message
        _reply(sock, {"ok": False, "error": f"{first}{_headers_hint()}"}, [])
        return 1
    _reply(sock, reply, fds)
    del owner
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
