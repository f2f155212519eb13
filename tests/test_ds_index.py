"""dsIndex allocation is stable per UUID and probes past collisions."""

import uuid

from hsflowd_py.ds_index import COUNT, FIRST, DsIndexes, fnv1a32


def test_fnv1a32_known_values() -> None:
    # Reference values of 32-bit FNV-1a.
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_same_uuid_same_index_across_allocators() -> None:
    u = uuid.uuid4().bytes
    assert DsIndexes().allocate(u) == DsIndexes().allocate(u) == FIRST + fnv1a32(u) % COUNT


def test_collision_probes_linearly_and_release_frees() -> None:
    d = DsIndexes()
    # Find two UUIDs that want the same slot.
    seen: dict[int, bytes] = {}
    for i in range(200000):
        u = i.to_bytes(16, "big")
        slot = fnv1a32(u) % COUNT
        if slot in seen:
            a, b = seen[slot], u
            break
        seen[slot] = u
    ia, ib = d.allocate(a), d.allocate(b)
    assert ib == FIRST + (ia - FIRST + 1) % COUNT
    assert d.allocate(a) == ia
    d.release(a)
    assert d.allocate(b) == ib
    assert d.allocate(a) == ia  # free again
