"""netlink.LinkChanges against the kernel: a check of the interfaces reads from /sys only the links
added, changed or removed since the last one (every link when the full re-read is due)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from netns import sh

from hsflowd_py.netlink import Announced, LinkChanges
from hsflowd_py.netns import enter_namespace

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")]


def opened_in(ns: str) -> LinkChanges:
    """A LinkChanges whose socket belongs to namespace ``ns`` (made on a thread that enters it)."""
    made: list[LinkChanges] = []

    def body() -> None:
        enter_namespace(f"/run/netns/{ns}")
        made.append(LinkChanges(Path("/")))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return made[0]


def index_of(ns: str, name: str) -> int:
    return int(sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{name}/ifindex").stdout)


def test_a_check_reads_only_the_links_announced_since_the_last() -> None:
    ns = f"hsfpy-links-{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    links = None
    try:
        links = opened_in(ns)
        assert links.changes(180).everything, "the first check reads every link"
        assert links.changes(180) == Announced(everything=False)
        sh("ip", "-n", ns, "link", "add", "lc7", "type", "veth", "peer", "name", "lc8")
        lc7, lc8 = index_of(ns, "lc7"), index_of(ns, "lc8")
        assert links.changes(180) == Announced(everything=False, links={lc7: "lc7", lc8: "lc8"})
        sh("ip", "-n", ns, "addr", "add", "10.252.7.1/24", "dev", "lc7")
        assert links.changes(180) == Announced(everything=False), "an address is not a link change"
        sh("ip", "-n", ns, "link", "set", "lc7", "name", "lc9")
        assert links.changes(180).links == {lc7: "lc9"}, "renamed: read under its new name"
        sh("ip", "-n", ns, "link", "add", "br7", "type", "bridge")
        br7 = index_of(ns, "br7")
        assert links.changes(180).links == {br7: "br7"}
        bridge_events = links.stats["bridge_events"]
        sh("ip", "-n", ns, "link", "set", "lc9", "master", "br7")
        sh("ip", "-n", ns, "link", "set", "lc9", "up")
        assert set(links.changes(180).links) <= {lc7, lc8, br7}, "a port's change: the port (its peer, its bridge)"
        assert links.stats["bridge_events"] > bridge_events, "the bridge's repeat of it counted, not read"
        sh("ip", "-n", ns, "link", "del", "lc9")
        gone = links.changes(180).links
        assert gone[lc7] is None and gone[lc8] is None, "both ends of the pair are gone"
        assert set(gone) <= {lc7, lc8, br7}, "and the bridge that lost its port changed"
        assert links.changes(180) == Announced(everything=False)
        assert links.changes(0).everything, "the full re-read is due"
    finally:
        if links is not None:
            links.close()
        sh("ip", "netns", "del", ns, check=False)


def test_a_tree_other_than_the_root_is_read_whole_at_every_check(tmp_path: Path) -> None:
    links = LinkChanges(tmp_path)
    assert links.changes(180).everything and links.changes(180).everything
    links.close()
