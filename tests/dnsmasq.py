"""A real DNS server for the tests: Debian's dnsmasq on a loopback port, started and stopped by pid.

dnsmasq re-reads only host files on SIGHUP, never SRV or TXT records (its man
page, NOTES: "SIGHUP does NOT re-read the configuration file"), so changing
a service record means restarting it on the same port: :meth:`Dnsmasq.restart`.
``--local=/zone/`` makes it answer NXDOMAIN or an empty answer for names of the
zone it does not know (without it, having no upstream, it answers REFUSED),
and REFUSED for every other zone, which is how a test gets a failing server.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.resolver
from procs import terminate


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (dnsmasq listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def available() -> bool:
    return shutil.which("dnsmasq") is not None


@dataclass
class Zone:
    """Records of one zone: SRV (target, port), TXT strings, host addresses, all with dnsmasq's local TTL."""

    name: str = "example.test"
    srv: list[tuple[str, int]] = field(default_factory=list)
    txt: list[str] = field(default_factory=list)
    hosts: dict[str, list[str]] = field(default_factory=dict)

    def service(self) -> str:
        return f"_sflow._udp.{self.name}"

    def lines(self) -> list[str]:
        out = [f"local=/{self.name}/"]
        out += [f"srv-host={self.service()},{target},{port}" for target, port in self.srv]
        if self.txt:
            out.append(f"txt-record={self.service()}," + ",".join(f'"{s}"' for s in self.txt))
        out += [f"host-record={name},{','.join(addresses)}" for name, addresses in self.hosts.items()]
        return out


class Dnsmasq:
    """dnsmasq serving a :class:`Zone` on 127.0.0.1:``port``; its log goes to ``workdir/dnsmasq.log``."""

    def __init__(self, workdir: Path, ttl: int = 10) -> None:
        self.workdir = workdir
        self.ttl = ttl
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "dnsmasq.log"

    def start(self, zone: Zone) -> None:
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text("\n".join(zone.lines()) + "\n")
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=" + str(conf), "--no-resolv", "--no-hosts"]
        args += ["--bind-interfaces", "--listen-address=127.0.0.1", f"--port={self.port}", "--pid-file="]
        args += [f"--local-ttl={self.ttl}", "--user=root", "--log-queries", f"--log-facility={self.log}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(zone)

    def _wait_ready(self, zone: Zone) -> None:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], self.port, 0.5
        end = time.monotonic() + 5
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                resolver.resolve(zone.service(), "TXT", raise_on_no_answer=False)
                return
            except dns.resolver.NXDOMAIN:
                return
            except dns.exception.DNSException:
                time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer within 5 s")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 5)
        self.proc = None

    def restart(self, zone: Zone) -> None:
        """New records: dnsmasq cannot reload SRV/TXT, so stop it and start it again on the same port."""
        self.stop()
        self.start(zone)
