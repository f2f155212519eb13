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


def colliding(n: int) -> list[bytes]:
    """``n`` UUIDs that all want the same slot."""
    by_slot: dict[int, list[bytes]] = {}
    for i in range(2_000_000):
        u = i.to_bytes(16, "big")
        same = by_slot.setdefault(fnv1a32(u) % COUNT, [])
        same.append(u)
        if len(same) == n:
            return same
    raise AssertionError("no collision found")


def test_collision_probes_linearly() -> None:
    d = DsIndexes()
    a, b = colliding(2)
    ia, ib = d.allocate(a), d.allocate(b)
    assert ib == FIRST + (ia - FIRST + 1) % COUNT
    assert d.allocate(a) == ia


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_released_index_stays_reserved_for_forget_s_then_is_free() -> None:
    clock = Clock()
    d = DsIndexes(forget_s=180, clock=clock)
    a, b, c = colliding(3)
    ia = d.allocate(a)
    d.release(a)
    clock.now += 179
    assert d.allocate(b) == FIRST + (ia - FIRST + 1) % COUNT, "a's index is still reserved"
    assert d.allocate(a) == ia, "a came back within forgetVMs: same index"
    d.release(a)
    clock.now += 180
    assert d.allocate(c) == ia, "forgotten: the index is free for another"
    assert d.allocate(a) == FIRST + (ia - FIRST + 2) % COUNT
