"""Test hosts in network namespaces: a veth pair from the root namespace into a namespace.

Names carry the test process id so parallel runs never collide, and
everything made here is removed on exit, even after a failing test.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def ns_exec(ns: str, *args: str) -> list[str]:
    """Command line running ``args`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *args]


@dataclass
class VethNamespace:
    """``host_dev`` (host_ip) in the root namespace, its peer ``ns_dev`` (ns_ip) inside ``ns``."""

    tag: str
    subnet: int = 77
    ipv6: bool = True

    def __post_init__(self) -> None:
        suffix = f"{os.getpid() % 100000}"
        self.ns = f"hsfpy-{self.tag}-{suffix}"
        self.host_dev = f"h{self.tag[:4]}{suffix}"[:15]
        self.ns_dev = f"n{self.tag[:4]}{suffix}"[:15]
        self.host_ip = f"10.253.{self.subnet}.1"
        self.ns_ip = f"10.253.{self.subnet}.2"
        self.host_ip6 = f"fd00:253:{self.subnet}::1"
        self.ns_ip6 = f"fd00:253:{self.subnet}::2"

    def __enter__(self) -> VethNamespace:
        try:
            sh("ip", "netns", "add", self.ns)
            sh("ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
            sh("ip", "link", "set", self.ns_dev, "netns", self.ns)
            sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_dev)
            sh(*ns_exec(self.ns, "ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_dev))
            if self.ipv6:
                sh("ip", "-6", "addr", "add", f"{self.host_ip6}/64", "dev", self.host_dev, "nodad")
                sh(*ns_exec(self.ns, "ip", "-6", "addr", "add", f"{self.ns_ip6}/64", "dev", self.ns_dev, "nodad"))
            sh("ip", "link", "set", self.host_dev, "up")
            sh(*ns_exec(self.ns, "ip", "link", "set", self.ns_dev, "up"))
            sh(*ns_exec(self.ns, "ip", "link", "set", "lo", "up"))
        except BaseException:
            self.close()
            raise
        return self

    @property
    def host_ifindex(self) -> int:
        with open(f"/sys/class/net/{self.host_dev}/ifindex") as f:
            return int(f.read())

    def exec(self, *args: str) -> list[str]:
        return ns_exec(self.ns, *args)

    def close(self) -> None:
        sh("ip", "link", "del", self.host_dev, check=False)
        sh("ip", "netns", "del", self.ns, check=False)

    def __exit__(self, *exc: object) -> None:
        self.close()
