"""SparseCache: claims, writes, event-driven waits (threads synchronised by Events only)."""

from __future__ import annotations

import threading

import pytest

from kithara_io.reading.cache import SparseCache, Wait
from kithara_io.errors import StreamClosedError, StreamError

WAIT = 10.0


def write(cache: SparseCache, fetch_id: int, pos: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        buf = cache.write_buffer(fetch_id, pos + done, len(data) - done)
        assert buf is not None
        buf[:] = data[done : done + len(buf)]
        cache.commit(fetch_id, pos + done, len(buf))
        done += len(buf)


def wait_for(cache: SparseCache, start: int, end: int) -> Wait:
    return cache.read_when_present(start, end - start, lambda pieces: None)[0]


def read(cache: SparseCache, pos: int, n: int) -> bytes:
    ready, data = cache.read_when_present(pos, n, b"".join)
    assert ready is Wait.READY
    return data


def test_write_and_read_across_blocks():
    cache = SparseCache(block_size=16)
    data = bytes(range(50))
    cache.claim(1, 5, 55)
    write(cache, 1, 5, data)
    assert read(cache, 5, 50) == data
    assert list(cache.present()) == [(5, 55)]
    assert cache.claim_progress(1) == (55, 55)


def test_wait_reports_unclaimed_gap():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 10)
    write(cache, 1, 0, b"x" * 10)
    assert wait_for(cache, 0, 10) is Wait.READY
    assert wait_for(cache, 0, 11) is Wait.UNCLAIMED


def test_an_interrupt_is_raised_by_a_read_of_unclaimed_bytes_too():
    """A read that finds bytes nobody fetches (its own fetch was just cancelled by
    ``interrupt``) raises InterruptedError, once, instead of returning UNCLAIMED, which
    would make it fetch them itself; bytes present are read whatever is pending."""
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 10)
    write(cache, 1, 0, b"x" * 10)
    cache.interrupt()
    assert cache.interrupt_pending
    assert read(cache, 0, 10) == b"x" * 10  # present: no wait, the interrupt stays pending
    with pytest.raises(InterruptedError):
        wait_for(cache, 0, 11)
    assert not cache.interrupt_pending
    assert wait_for(cache, 0, 11) is Wait.UNCLAIMED  # once


def test_waiter_wakes_when_bytes_arrive():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 32)
    result, entered = [], threading.Event()

    def reader():
        entered.set()
        result.append(wait_for(cache, 0, 32))

    t = threading.Thread(target=reader)
    t.start()
    assert entered.wait(WAIT)
    write(cache, 1, 0, b"a" * 32)
    t.join(WAIT)
    assert result == [Wait.READY]


def test_release_of_unfinished_claim_wakes_waiter_as_unclaimed():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 32)
    result = []
    t = threading.Thread(target=lambda: result.append(wait_for(cache, 0, 32)))
    t.start()
    cache.release(1)
    t.join(WAIT)
    assert result == [Wait.UNCLAIMED]


@pytest.mark.parametrize("how", ["close", "fail"])
def test_close_or_failure_wakes_waiters_with_an_error(how):
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 32)
    errors = []

    def reader():
        try:
            wait_for(cache, 0, 32)
        except StreamError as exc:
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    failure = StreamError("boom", url="http://x")
    cache.close() if how == "close" else cache.fail(failure)
    t.join(WAIT)
    assert not t.is_alive()
    if how == "close":
        assert isinstance(errors[0], StreamClosedError)
    else:
        assert errors == [failure]


def test_shrink_claim_never_takes_back_a_granted_buffer():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 100)
    buf = cache.write_buffer(1, 0, 10)
    assert len(buf) == 10
    cache.shrink_claim(1, 0)  # cancel: the 10 granted bytes stay claimed
    assert cache.claim_progress(1) == (0, 10)
    buf[:] = b"z" * 10
    cache.commit(1, 0, 10)
    assert cache.write_buffer(1, 10, 10) is None  # the claim ends there now


def test_wait_for_size():
    cache = SparseCache()
    t = threading.Thread(target=lambda: cache.set_size(123))
    t.start()
    assert cache.wait_for_size() == 123
    t.join(WAIT)


def test_eviction_keeps_window_and_claims_and_fits_budget():
    cache = SparseCache(block_size=16, budget=64)
    cache.set_window(96, 128)
    cache.claim(2, 0, 16)  # a fetch still owns block 0
    cache.claim(1, 16, 160)
    write(cache, 1, 16, bytes(range(144)))
    assert cache.bytes_held <= 64 + 16  # block 0 is allocated only when its fetch writes
    present = cache.present()
    assert present.contains(96, 128), "the reader's window is never evicted"
    # blocks far from the window went first; what is left is near it
    assert not present.contains(16, 32)
    assert read(cache, 96, 32) == bytes(range(80, 112))


def test_evicted_bytes_become_missing_again():
    cache = SparseCache(block_size=16, budget=32)
    cache.set_window(48, 64)
    cache.claim(1, 0, 64)
    write(cache, 1, 0, b"a" * 64)
    cache.release(1)
    assert wait_for(cache, 0, 16) is Wait.UNCLAIMED


def test_stored_pieces_fill_blocks_and_read_back():
    from kithara_io.reading.cache import joined

    cache = SparseCache(block_size=16)
    cache.set_size(40)
    cache.claim(1, 0, 16)
    cache.claim(2, 16, 21)
    cache.claim(3, 21, 40)
    whole, tail = bytes(range(16)), bytes(range(100, 108))
    view = cache.piece_room(1, 0, 64)  # the fetch fills this block: received straight into it
    assert isinstance(view, memoryview) and len(view) == 16  # a piece never crosses a block
    view[:] = whole
    cache.commit(1, 0, 16)
    assert cache.piece_room(2, 16, 64) == 5  # a small part of a block: a piece kept as it is
    cache.store(2, 16, b"abcde")
    assert cache.piece_room(3, 21, 64) == 11  # beside kept pieces: one more piece
    cache.store(3, 21, b"x" * 11)
    view = cache.piece_room(3, 32, 64)  # half the last block (the resource's end): writable
    assert isinstance(view, memoryview) and len(view) == 8
    view[:] = tail
    cache.commit(3, 32, 8)
    assert cache.piece_room(3, 40, 64) == 0  # the claim ends here
    assert cache.read_when_present(0, 16, joined)[1] == whole
    assert cache.read_when_present(16, 5, joined)[1] == b"abcde"
    assert read(cache, 0, 40) == whole + b"abcde" + b"x" * 11 + tail


def test_exactly_one_kept_piece_is_read_back_uncopied():
    from kithara_io.reading.cache import joined

    cache = SparseCache(block_size=64)
    cache.claim(1, 8, 24)
    piece = bytes(range(8, 24))
    assert cache.piece_room(1, 8, 64) == 16
    cache.store(1, 8, piece)
    assert cache.read_when_present(8, 16, joined)[1] is piece


def test_a_piece_stored_where_a_writable_block_appeared_meanwhile_is_copied_in():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 4)
    cache.claim(2, 4, 16)
    assert cache.piece_room(1, 0, 4) == 4  # a small part: to be kept as a piece
    view = cache.piece_room(2, 4, 12)  # another fetch fills the rest: the block becomes writable
    assert isinstance(view, memoryview)
    view[:] = b"y" * 12
    cache.commit(2, 4, 12)
    cache.store(1, 0, b"abcd")
    assert read(cache, 0, 16) == b"abcd" + b"y" * 12


def test_a_block_kept_as_pieces_becomes_writable_with_its_bytes():
    cache = SparseCache(block_size=64)
    cache.claim(1, 4, 12)  # a small part of the block: kept as the body's piece
    cache.store(1, 4, bytes(range(4, 12)))
    cache.release(1)
    cache.claim(2, 0, 4)  # a body read with readinto writes beside it
    view = cache.write_buffer(2, 0, 4)
    assert view is not None and len(view) == 4
    view[:] = b"WXYZ"
    cache.commit(2, 0, 4)
    assert read(cache, 0, 12) == b"WXYZ" + bytes(range(4, 12))


def test_blocks_never_exceed_the_budget():
    cache = SparseCache(block_size=16, budget=64)
    for i in range(12):
        cache.set_window(i * 16, (i + 1) * 16)
        cache.claim(i, i * 16, (i + 1) * 16)
        write(cache, i, i * 16, bytes([i]) * 16)
        cache.release(i)
        assert cache.bytes_held <= 64
    assert read(cache, 11 * 16, 16) == bytes([11]) * 16


def test_store_after_close_or_release_keeps_nothing():
    cache = SparseCache(block_size=16)
    cache.claim(1, 0, 32)
    assert cache.piece_room(1, 0, 16)  # granted: a writable view of the block
    cache.release(1)
    cache.store(1, 0, bytes(16))
    assert cache.present().total == 0
    cache.claim(2, 16, 32)
    assert cache.piece_room(2, 16, 16)
    cache.close()
    cache.store(2, 16, bytes(16))
    assert cache.present().total == 0


def test_parts_of_a_block_are_kept_as_pieces_and_read_across():
    from kithara_io.reading.cache import joined

    cache = SparseCache(block_size=64)
    cache.claim(1, 8, 24)
    cache.claim(2, 24, 40)
    first, second = bytes(range(8, 24)), bytes(range(24, 40))
    assert cache.piece_room(2, 24, 64) == 16
    cache.store(2, 24, second)  # stored before the piece in front of it
    assert cache.piece_room(1, 8, 64) == 16
    cache.store(1, 8, first)
    assert cache.read_when_present(8, 16, joined)[1] is first  # exactly one piece: itself
    assert read(cache, 10, 28) == bytes(range(10, 38))  # across both pieces
    cache.claim(3, 40, 48)  # a body read with readinto beside them: the block becomes writable
    write(cache, 3, 40, bytes(range(40, 48)))
    assert read(cache, 8, 40) == bytes(range(8, 48))


def test_a_whole_resource_is_read_in_one_hold_until_recycled():
    """``whole`` turns True once every byte is present, whatever the order the pieces came
    in (or the size was learned in); ``read_held`` then serves any range, and gives way
    (None) once the cache is closed, failed or recycled."""
    data = bytes(range(40))
    cache = SparseCache(block_size=16)
    cache.claim(1, 16, 40)
    write(cache, 1, 16, data[16:])
    cache.set_size(40)
    assert not cache.whole and cache.read_held(0, 8, b"".join) is None
    cache.claim(2, 0, 16)
    write(cache, 2, 0, data[:16])  # the run from byte 0 reaches the end only now
    assert cache.whole
    assert cache.read_held(10, 20, b"".join) == data[10:30]

    late = SparseCache(block_size=16)  # the size learned after the bytes
    late.claim(1, 0, 40)
    write(late, 1, 0, data)
    assert not late.whole
    late.set_size(40)
    assert late.whole and late.read_held(0, 40, b"".join) == data

    failed = SparseCache(block_size=16)
    failed.set_size(40)
    failed.claim(1, 0, 40)
    write(failed, 1, 0, data)
    failed.fail(StreamError("gone"))
    assert failed.read_held(0, 8, b"".join) is None  # the long way raises it

    cache.close()
    assert cache.read_held(0, 8, b"".join) is None
    cache.recycle()
    assert not cache.whole


def test_a_random_readers_pieces_count_by_their_bytes():
    """Pieces kept as the bodies handed them over hold only their bytes of the budget: a
    random reader's small reads fill it with data, not with mostly empty blocks."""
    cache = SparseCache(block_size=64, budget=256)
    for i in range(16):  # 16 blocks, 8 bytes in each: 128 bytes, well within 256
        pos = i * 64 + 8
        cache.set_window(pos, pos + 8)
        cache.claim(i, pos, pos + 8)
        cache.store(i, pos, bytes([i]) * 8)
        cache.release(i)
    assert cache.bytes_held == 128
    assert all(read(cache, i * 64 + 8, 8) == bytes([i]) * 8 for i in range(16))  # none evicted


def test_a_whole_block_after_pieces_evicts_to_stay_within_the_budget():
    """A writable block that would pass the budget evicts enough first, also when the held
    bytes are already under the eviction target (small pieces, then a whole block)."""
    cache = SparseCache(block_size=64, budget=256)
    for i in range(3):  # three blocks of 40 bytes each: 120 held
        cache.claim(i, i * 64, i * 64 + 40)
        cache.store(i, i * 64, bytes([i]) * 40)
        cache.release(i)
    cache.claim(10, 3 * 64, 4 * 64)  # a whole block: writable
    write(cache, 10, 3 * 64, bytes(64))
    cache.claim(11, 4 * 64, 6 * 64)  # two more: 120 + 192 would pass 256
    cache.set_window(4 * 64, 6 * 64)
    write(cache, 11, 4 * 64, bytes(128))
    assert cache.bytes_held <= 256
    assert read(cache, 4 * 64, 128) == bytes(128)


def test_bytes_marked_present_that_no_block_holds_fail_a_read_loudly():
    """Pieces are stored only where nothing is present (claims cover gaps). Should that ever
    break, a read raises instead of looping for ever over an empty view (a prototype that
    claimed present bytes once grew a list of empty views to 24 GB)."""
    cache = SparseCache(block_size=64)
    cache.claim(1, 0, 16)
    assert cache.piece_room(1, 0, 16) == 16
    cache.store(1, 0, b"a" * 16)
    cache.claim(2, 4, 8)  # over present bytes: what the engine never does
    assert cache.piece_room(2, 4, 4) == 4
    cache.store(2, 4, b"b" * 4)  # a short piece now shadows the long one from byte 8 on
    with pytest.raises(RuntimeError, match="marked present"):
        cache.read_when_present(8, 8, b"".join)
