"""End to end: the agent process with ``docker { }`` following the real test engine, its datagrams
decoded by the bundled collector.  Container names carry the test's pid, and only the test's own
containers are looked at (other sessions may share the engine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dockerd import Container, Containers, Engine, containers, ensure_busybox_image, unmount_under
from procs import free_udp_port, json_datagrams, start_agent, start_collector

HOST_CPUS = os.cpu_count()
VETH_TAG = f"hsfdr{os.getpid() % 10000}"


@dataclass
class Sample:
    at: float
    """time.monotonic() when the collector printed it."""
    ds_index: int
    e: dict[str, dict[str, Any]]
    """Records by tag ("0:2101"), each as the collector's JSON object."""

    seq: int

    def value(self, tag: str, key: str) -> int:
        return int(self.e[tag][key])

    @property
    def hostname(self) -> str:
        return self.e["0:2000"]["hostname"]

    @property
    def state(self) -> int:
        return self.value("0:2101", "vcpu_state")


class Run:
    """An agent and a collector; ``samples`` gathers the container (3:N) counter samples seen so far."""

    def __init__(
        self,
        tmp_path: Path,
        socket_path: Path,
        extra: str = "",
        docker: str = "",
        polling: int = 1,
        block: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``block`` replaces the docker block (the k8s tests pass theirs)."""
        port = free_udp_port()
        self.collector = start_collector(port, "-j")
        conf = tmp_path / "hsflowd.conf"
        block = block if block is not None else f"docker {{ socket = {socket_path} {docker} }}"
        conf.write_text(
            f"sflow {{\n polling = {polling}\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n"
            f" {block}\n{extra}\n}}\n"
        )
        self.agent = start_agent(conf, tmp_path / "hsflowd.auto", **kwargs)
        self.samples: list[Sample] = []
        self.hosts: list[dict[str, dict[str, Any]]] = []
        self.flows: list[dict[str, Any]] = []
        self.ports: list[tuple[int, dict[str, dict[str, Any]]]] = []
        """Interface (0:ifIndex) counter samples: the ifIndex and the records by tag."""

    def pump(self, seconds: float) -> None:
        for d in json_datagrams(self.collector, seconds):
            now = time.monotonic()
            for s in d["samples"]:
                cls, index = s["sourceId"].split(":")
                if s["sampleType"] == "FLOWSAMPLE":
                    self.flows.append(s)
                elif s["sourceId"] == "2:1":
                    self.hosts.append({e["counterBlock_tag"]: e for e in s["elements"]})
                elif cls == "0":
                    self.ports.append((int(index), {e["counterBlock_tag"]: e for e in s["elements"]}))
                elif cls == "3":
                    elements = {e["counterBlock_tag"]: e for e in s["elements"]}
                    self.samples.append(Sample(now, int(index), elements, int(s["sampleSequenceNo"])))

    def wait_for(self, what: str, timeout: float, condition: Any) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.agent.p.poll() is None:
            if result := condition():
                return result
            self.pump(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; agent said:\n{self.stderr()[-3000:]}")

    def of(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.hostname == name]

    def stderr(self) -> str:
        return "".join(self.agent.stderr)

    def stop(self) -> None:
        self.agent.stop()
        self.collector.stop()


@pytest.fixture
def run_factory(tmp_path: Path) -> Iterator[Any]:
    runs: list[Run] = []

    def make(socket_path: Path, **kwargs: Any) -> Run:
        r = Run(tmp_path, socket_path, **kwargs)
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.stop()


def following(run: Run) -> bool:
    return "docker: following the engine" in run.stderr()


def uuid_of(c: Container) -> str:
    h = c.id[:32]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ------------------------------------------------------------------ life cycle


def test_containers_from_start_to_final_sample(docker_engine: Engine, busybox_image: str, run_factory: Any) -> None:
    """Runs unprivileged (the agent drops root), as in production."""
    run = run_factory(docker_engine.socket, polling=2, drop_root=True)
    run.wait_for("the module to follow the engine", 15, lambda: following(run))
    with containers(docker_engine, "dklife") as cs:
        brief = cs.run("brief", "sleep", "1")
        started = time.monotonic()
        big = cs.run("big", "sleep", "60", options=("--memory", "64m", "--cpus", "1.5", "--stop-timeout", "1"))
        big_started = time.monotonic()
        isolated = cs.run("isolated", "sleep", "60", options=("--network", "none"))

        first = run.wait_for("big's first sample", 5, lambda: run.of(big.name))[0]
        assert first.at - big_started <= 2.0, "a started container's first sample within 2 s"
        assert first.e["0:2000"]["UUID"] == uuid_of(big)
        assert (first.e["0:2002"]["parent_dsClass"], first.e["0:2002"]["parent_dsIndex"]) == ("2", "1")
        assert first.e["0:2001"]["adaptor_list"][0]["mac_list"] == [big.mac.replace(":", "")]
        assert first.value("0:2102", "vmem_maxMemory") == 64 << 20
        assert first.value("0:2101", "vcpu_cpuCount") == 2 and first.state == 1

        # the one-second container: reported, with its name, and closed by a final sample
        brief_samples = run.wait_for(
            "brief's final sample", 10, lambda: [s for s in run.of(brief.name) if s.state == 4]
        )
        assert run.of(brief.name)[0].at - started <= 2.5
        assert brief_samples[-1] is run.of(brief.name)[-1]

        # no network of its own: no adapters, a network I/O record of nothing
        alone = run.wait_for("isolated's samples", 5, lambda: run.of(isolated.name))[-1]
        assert alone.e["0:2001"].get("adaptor_list", []) == []
        assert alone.value("0:2104", "vnio_bytes_in") == 0 and alone.value("0:2104", "vnio_pkts_out") == 0

        run.wait_for("a second regular sample of big", 6, lambda: len(run.of(big.name)) >= 2)
        cs.stop(big)
        stopped = time.monotonic()
        final = run.wait_for("big's final sample", 10, lambda: [s for s in run.of(big.name) if s.state == 4])[0]
        before = [s for s in run.of(big.name) if s.state == 1][-1]
        for tag, key in [("0:2101", "vcpu_cpu_mS"), ("0:2102", "vmem_memory"), ("0:2104", "vnio_bytes_in")]:
            assert final.value(tag, key) >= before.value(tag, key), f"{key} went backwards in the final sample"
        assert final.value("0:2102", "vmem_memory") > 0, "the final sample carries the last values, not zeros"
        assert final.at - stopped < 5
        run.pump(4.5)  # more than two polling intervals
        assert run.of(big.name)[-1] is final, "no sample after the final one"
        assert len({s.ds_index for s in run.of(big.name)}) == 1

        # the host sample gains 0:2100, counting the containers (other sessions may add theirs)
        node = run.hosts[-1]["0:2100"]
        assert int(node["vnode_num_domains"]) >= 1 and int(node["vnode_cpus"]) == HOST_CPUS
    assert "Traceback" not in run.stderr()


# ------------------------------------------------------------------ counters move the right way


def test_counters_follow_what_containers_do(docker_engine: Engine, busybox_image: str, run_factory: Any) -> None:
    run = run_factory(docker_engine.socket, polling=1)
    run.wait_for("the module to follow the engine", 15, lambda: following(run))
    with containers(docker_engine, "dkwork") as cs:
        server = cs.run("server", "sleep", "60")
        work = {
            "burn": "timeout 4 sh -c 'while :; do :; done'",
            "fill": "dd if=/dev/zero of=/dev/shm/fill bs=1M count=50",
            "write": "dd if=/dev/zero of=/written bs=1M count=20 conv=fsync",
            "ping": f"ping -c 20 -i 0.2 -s 1000 {server.ip}",
        }
        started = {k: cs.run(k, "sh", "-c", f"sleep 3; {cmd}; sleep 60") for k, cmd in work.items()}

        def growth(name: str, tag: str, key: str) -> int:
            got = run.of(name)
            return got[-1].value(tag, key) - got[0].value(tag, key) if len(got) >= 2 else -1

        checks = [
            (started["burn"].name, "0:2101", "vcpu_cpu_mS", 1000),
            (started["fill"].name, "0:2102", "vmem_memory", 45 << 20),
            (started["write"].name, "0:2103", "vdsk_wr_bytes", 20 << 20),
            (started["ping"].name, "0:2104", "vnio_pkts_out", 15),
            (started["ping"].name, "0:2104", "vnio_bytes_out", 15 * 1000),
            (server.name, "0:2104", "vnio_pkts_in", 15),
            (server.name, "0:2104", "vnio_bytes_in", 15 * 1000),
        ]
        try:
            run.wait_for("every figure to move", 30, lambda: all(growth(*c[:3]) >= c[3] for c in checks))
        except AssertionError as err:
            behind = [
                f"{n} {key} +{growth(n, tag, key)} < {by}" for n, tag, key, by in checks if growth(n, tag, key) < by
            ]
            raise AssertionError(f"{behind}\n{err}") from None
        for name in [server.name, *(c.name for c in started.values())]:
            got = run.of(name)
            for tag, key in [("0:2101", "vcpu_cpu_mS"), ("0:2103", "vdsk_wr_bytes"), ("0:2104", "vnio_bytes_in")]:
                values = [s.value(tag, key) for s in got]
                assert values == sorted(values), f"{name} {key} went backwards: {values}"
        # the others did not burn CPU like the burner
        assert growth(server.name, "0:2101", "vcpu_cpu_mS") * 5 < growth(started["burn"].name, "0:2101", "vcpu_cpu_mS")


# ------------------------------------------------------------------ pcap + markTraffic


def test_flow_samples_between_containers_carry_their_ds_indexes(
    docker_engine: Engine, busybox_image: str, run_factory: Any
) -> None:
    extra = "pcap { dev = docker0 promisc = on sampler = cbpf sampling = 1 }"
    run = run_factory(docker_engine.socket, polling=1, extra=extra, docker="markTraffic = on")
    run.wait_for("the module to follow the engine", 15, lambda: following(run))
    with containers(docker_engine, "dkflow") as cs:
        b = cs.run("b", "sleep", "60")
        a = cs.run("a", "sh", "-c", f"sleep 2; ping -c 30 -i 0.1 {b.ip}; sleep 60")
        ds = run.wait_for(
            "both containers' samples", 10, lambda: (run.of(a.name) and run.of(b.name)) and (a.name, b.name)
        )
        ds_a, ds_b = run.of(ds[0])[0].ds_index, run.of(ds[1])[0].ds_index
        a_ip, b_ip = a.ip, b.ip

        def marked() -> list[tuple[str, ...]]:
            out = []
            for f in run.flows:
                el = {e["flowBlock_tag"]: e for e in f["elements"]}
                h = el.get("0:1", {})
                if {h.get("srcIP"), h.get("dstIP")} == {a_ip, b_ip} and "0:2210" in el:
                    e = el["0:2210"]
                    ents = (e["entities_src_class"], e["entities_src_index"], e["entities_dst_class"])
                    out.append((h["srcIP"], *ents, e["entities_dst_index"]))
            return out

        got = run.wait_for("marked flow samples both ways", 15, lambda: len(set(marked())) >= 2 and marked())
        for src_ip, src_class, src_index, dst_class, dst_index in got:
            want = (ds_a, ds_b) if src_ip == a_ip else (ds_b, ds_a)
            assert (src_class, dst_class) == ("3", "3") and (int(src_index), int(dst_index)) == want
        ifindex = socket.if_nametoindex("docker0")
        assert all(f["sourceId"] == f"0:{ifindex}" for f in run.flows)


# ------------------------------------------------------------------ the engine restarts


@contextmanager
def private_engine(live_restore: bool) -> Iterator[Engine]:
    """An engine of this test alone, on its own bridge (10.253.50.0/24), that it may restart."""
    bridge = VETH_TAG
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    tag = f"hsflowd-test-docker-restart-{os.getpid()}"
    args = ("--bridge", bridge, *(("--live-restore",) if live_restore else ()))
    engine = Engine(Path(f"/run/{tag}/docker.sock"), Path(f"/var/lib/{tag}"), args)
    try:
        subprocess.run(["ip", "addr", "add", "10.253.50.1/24", "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        engine.start()
        ensure_busybox_image(engine)
        yield engine
    finally:
        engine.stop(keep=False)
        unmount_under(engine.state)  # a live-restore engine leaves its data root bind-mounted on itself
        unmount_under(engine.socket.parent)
        subprocess.run(["rm", "-rf", str(engine.state), str(engine.socket.parent)], check=False)
        subprocess.run(["ip", "link", "del", bridge], check=False)


def restarted_(cs: Containers, c: Container) -> Container | None:
    now = cs.inspect(c.id)
    return now if now.pid not in (0, c.pid) else None


def test_engine_restart_brings_containers_back_with_their_ds_indexes(busybox_image: str, run_factory: Any) -> None:
    """Without live restore the engine stops every container when it goes and starts the ones with a
    restart policy when it comes back: they get new pids, new namespaces, the same dsIndex."""
    with private_engine(live_restore=False) as engine:
        run = run_factory(engine.socket, polling=1)
        run.wait_for("the module to follow the engine", 15, lambda: following(run))
        with containers(engine, "dkrestart") as cs:
            always = ("--restart", "always", "--stop-timeout", "1")
            kept = cs.run("kept", "sleep", "300", options=always)
            isolated = cs.run("isolated", "sleep", "300", options=(*always, "--network", "none"))
            once = cs.run("once", "sleep", "300", options=("--stop-timeout", "1"))
            names = [kept.name, isolated.name, once.name]
            run.wait_for("samples of all three", 10, lambda: all(run.of(n) for n in names))
            ds = {n: run.of(n)[0].ds_index for n in names}

            engine.restart()
            restarted = time.monotonic()
            kept_now = run.wait_for("the engine to start the container again", 30, lambda: restarted_(cs, kept))

            def back(name: str) -> bool:
                return any(s.at > restarted and s.state == 1 for s in run.of(name))

            run.wait_for("the restarted containers reported again", 30, lambda: back(kept.name) and back(isolated.name))
            run.pump(2)
            for name in names:
                assert {s.ds_index for s in run.of(name)} == {ds[name]}, "same dsIndex after the restart"
            assert run.of(once.name)[-1].state == 4, "the container the engine did not restart got its final sample"
            assert not [s for s in run.of(once.name) if s.at > restarted + 2]
            latest = run.of(kept.name)[-1]
            assert latest.e["0:2001"]["adaptor_list"][0]["mac_list"] == [kept_now.mac.replace(":", "")]
            text = run.stderr()
            assert text.count("unavailable") == 1, "the engine going away is logged once"
            assert "is back" in text and "Traceback" not in text


def test_engine_restart_with_live_restore_loses_and_duplicates_nothing(busybox_image: str, run_factory: Any) -> None:
    """With live restore the containers outlive the engine, and no event tells what happened while it
    was away: the resynchronisation keeps the survivors' pollers (same dsIndex, sample sequence
    numbers carrying on, counters never going backwards) and closes the one that died meanwhile."""
    with private_engine(live_restore=True) as engine:
        run = run_factory(engine.socket, polling=1)
        run.wait_for("the module to follow the engine", 15, lambda: following(run))
        with containers(engine, "dklive") as cs:
            kept = cs.run("kept", "sleep", "300")
            isolated = cs.run("isolated", "sleep", "300", options=("--network", "none"))
            killed = cs.run("killed", "sleep", "300", options=("--network", "none"))
            names = [kept.name, isolated.name, killed.name]
            run.wait_for("two samples of each", 10, lambda: all(len(run.of(n)) >= 2 for n in names))

            engine.stop(keep=False)
            down = time.monotonic()
            os.kill(killed.pid, signal.SIGKILL)  # dies while nobody can tell
            run.pump(2)
            engine.start()

            run.wait_for("the dead container's final sample", 20, lambda: run.of(killed.name)[-1].state == 4)
            run.wait_for(
                "the survivors reported after the engine came back",
                10,
                lambda: all(any(s.at > down + 3 for s in run.of(n)) for n in (kept.name, isolated.name)),
            )
            for name in (kept.name, isolated.name):
                got = run.of(name)
                assert len({s.ds_index for s in got}) == 1 and all(s.state == 1 for s in got)
                seqs = [s.seq for s in got]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"one poller all along: {seqs}"
                cpu = [s.value("0:2101", "vcpu_cpu_mS") for s in got]
                assert cpu == sorted(cpu)
            assert cs.inspect(kept.id).pid == kept.pid
            assert len({s.ds_index for s in run.of(killed.name)}) == 1
            text = run.stderr()
            assert text.count("unavailable") == 1 and "2 kept, 1 stopped meanwhile" in text
            assert "Traceback" not in text
