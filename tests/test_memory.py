"""The heap trimming that keeps a probing or evaluating process's RSS near what it holds (probing/memory.py)."""

import pytest

from greenmachine.errors import GreenmachineError
from greenmachine.probing import memory


def test_resident_bytes_is_this_process_rss():
    """A fresh anonymous mapping, every page touched: resident memory must grow by its size. (A torch tensor would
    not do: in a long test run the allocator may hand back pages that are already resident.)"""
    import mmap

    size = 64 * 2**20
    before = memory.resident_bytes()
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    assert memory.resident_bytes() >= before + 48 * 2**20
    block.close()


def test_trim_runs_only_past_the_growth_threshold(monkeypatch):
    if memory._malloc_trim() is None:
        pytest.skip("no glibc malloc_trim here")
    assert memory.trim_heap(force=True)
    monkeypatch.setenv(memory.TRIM_ENV, str(2**40))
    assert not memory.trim_heap()  # nothing near a terabyte has been allocated since
    monkeypatch.setenv(memory.TRIM_ENV, "0")
    assert memory.trim_heap()


@pytest.mark.parametrize("raw", ["-1", "lots", "1e9"])
def test_a_bad_threshold_is_one_line(monkeypatch, raw):
    monkeypatch.setenv(memory.TRIM_ENV, raw)
    with pytest.raises(GreenmachineError, match="GREENMACHINE_TRIM_BYTES must be a non-negative integer"):
        memory.trim_growth_bytes()
