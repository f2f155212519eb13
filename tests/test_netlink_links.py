"""netlink.LinkChanges against the kernel: a check of the interfaces reads /sys only when a link
was added, changed or removed since the last one (or the full re-read is due)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from netns import sh

from hsflowd_py.netlink import LinkChanges
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


def test_only_link_announcements_and_the_refresh_make_a_change() -> None:
    ns = f"hsfpy-links-{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    links = None
    try:
        links = opened_in(ns)
        assert links.changed(180), "the first check reads"
        assert not links.changed(180)
        sh("ip", "-n", ns, "link", "add", "lc7", "type", "veth", "peer", "name", "lc8")
        assert links.changed(180)
        assert not links.changed(180)
        sh("ip", "-n", ns, "addr", "add", "10.252.7.1/24", "dev", "lc7")
        assert not links.changed(180), "an address is not a link change"
        sh("ip", "-n", ns, "link", "set", "lc7", "up")
        assert links.changed(180)
        sh("ip", "-n", ns, "link", "del", "lc7")
        assert links.changed(180)
        assert not links.changed(180)
        assert links.changed(0), "the full re-read is due"
    finally:
        if links is not None:
            links.close()
        sh("ip", "netns", "del", ns, check=False)


def test_a_tree_other_than_the_root_is_read_at_every_check(tmp_path: Path) -> None:
    links = LinkChanges(tmp_path)
    assert links.changed(180) and links.changed(180)
    links.close()
