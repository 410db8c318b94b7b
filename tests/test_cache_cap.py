"""A capped probe cache: the least recently used entries go once the folder holds more than the cap, hits count as
uses, stale temporary files go, and `greenmachine cache info / prune` report and prune. Real TSS networks on real
CIFAR-10 images, batch 8, the cheap synflow pass."""

from __future__ import annotations

import os
import time

import pytest

from conftest import DATA, gm
from greenmachine.errors import GreenmachineError
from greenmachine.probing import cache as cache_module
from greenmachine.probing.cache import ProbeCache, max_bytes_from_env, open_cache, probe_sample
from greenmachine.probing.probe import ProbeSettings

SETTINGS = ProbeSettings("tss", "cifar10", batch_size=8)
ARCHS = [
    (11, "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"),
    (284, "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|"),
    (7, "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"),
]


def _age(paths, start: float) -> None:
    """Give the entries distinct, increasing last-use times, in the order given (mtime granularity aside)."""
    for k, p in enumerate(paths):
        os.utime(p, (start + k, start + k))


@pytest.fixture
def filled(tmp_path):
    root = tmp_path / "cache"
    store = ProbeCache(root, data_dir=DATA)
    probe_sample(ARCHS, SETTINGS, DATA, groups=("synflow",), cache=store)
    entries = store.entries()
    assert len(entries) == 3 and {e.group for e in entries} == {"synflow"}
    return root, entries


def test_prune_removes_the_least_recently_used_and_a_hit_is_a_use(filled):
    root, entries = filled
    store = ProbeCache(root, data_dir=DATA)
    by_index = {}
    for index, arch in ARCHS:  # which file belongs to which network
        key = store.key(SETTINGS, index, arch, "synflow")
        by_index[index] = store._path(key, SETTINGS, "synflow")
    _age([by_index[11], by_index[284], by_index[7]], time.time() - 100)
    assert store.load(SETTINGS, 11, ARCHS[0][1], "synflow") is not None  # a hit: 11 is now the most recent
    sizes = {e.path: e.size for e in store.entries()}
    keep = sizes[by_index[11]] + sizes[by_index[7]]
    r = store.prune(keep)
    assert (r.removed, r.kept, r.freed, r.kept_bytes) == (1, 2, sizes[by_index[284]], keep)
    assert not by_index[284].exists() and by_index[11].exists() and by_index[7].exists()
    assert store.prune(0).kept == 0 and store.entries() == []


def test_an_entry_another_process_pruned_first_is_neither_removed_nor_kept(filled, monkeypatch):
    root, _ = filled
    store = ProbeCache(root, data_dir=DATA)
    listed = store.entries()
    listed[0].path.unlink()  # gone between this prune's listing and its unlink
    monkeypatch.setattr(store, "entries", lambda: listed)
    r = store.prune(0)
    assert (r.removed, r.kept, r.kept_bytes) == (2, 0, 0)
    assert r.freed == listed[1].size + listed[2].size


def test_a_capped_cache_stays_under_its_cap_as_it_writes(tmp_path):
    root = tmp_path / "cache"
    probe_sample(ARCHS[:1], SETTINGS, DATA, groups=("synflow",), cache=ProbeCache(root, data_dir=DATA))
    one = ProbeCache(root).entries()[0].size
    capped = ProbeCache(root, data_dir=DATA, max_bytes=int(one * 2.5))
    probe_sample(ARCHS[1:], SETTINGS, DATA, groups=("synflow",), cache=capped)
    kept = capped.entries()
    assert sum(e.size for e in kept) <= capped.max_bytes
    assert len(kept) >= 1 and kept[-1].path.exists()  # what was written last is kept
    # the networks evicted are probed again, never an error
    assert len(probe_sample(ARCHS, SETTINGS, DATA, groups=("synflow",), cache=capped)) == 3


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(filled):
    root, entries = filled
    folder = entries[0].path.parent
    stale, fresh = folder / ".synflow-x.pt.abc.tmp", folder / ".synflow-y.pt.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - cache_module.STALE_TMP_SECONDS - 60
    os.utime(stale, (old, old))
    ProbeCache(root).prune(10**12)
    assert not stale.exists() and fresh.exists()
    assert len(ProbeCache(root).entries()) == 3  # nothing else removed under a large cap


def test_the_cap_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GREENMACHINE_CACHE_MAX_GB", raising=False)
    assert max_bytes_from_env() is None
    monkeypatch.setenv("GREENMACHINE_CACHE_MAX_GB", "1.5")
    assert open_cache(tmp_path / "c", False).max_bytes == 1_500_000_000
    assert open_cache(tmp_path / "c", True).root is None
    for bad in ("-2", "0", "lots", "nan", "inf"):
        monkeypatch.setenv("GREENMACHINE_CACHE_MAX_GB", bad)
        with pytest.raises(GreenmachineError, match="GREENMACHINE_CACHE_MAX_GB must be a"):
            open_cache(tmp_path / "c", False)


def test_cache_commands(filled, capsys, monkeypatch):
    root, entries = filled
    monkeypatch.delenv("GREENMACHINE_CACHE_MAX_GB", raising=False)
    code, out, err = gm(capsys, "cache", "info", "--cache-dir", root)
    assert code == 0, err
    total = sum(e.size for e in entries)
    assert f"tss/cifar10/synflow: 3 entries, {total / 1e9:.2f} GB" in out
    assert f"entries=3 gb={total / 1e9:.2f} max_gb=none" in out
    monkeypatch.setenv("GREENMACHINE_CACHE_MAX_GB", "many")  # a bad cap: one line, and nothing listed first
    code, out, err = gm(capsys, "cache", "info", "--cache-dir", root)
    assert code == 2 and out == "" and err.count("\n") == 1 and "GREENMACHINE_CACHE_MAX_GB" in err
    monkeypatch.delenv("GREENMACHINE_CACHE_MAX_GB")
    code, out, err = gm(capsys, "cache", "prune", "--max-gb", "-1", "--cache-dir", root)
    assert code == 2 and err.count("\n") == 1 and "non-negative number of GB" in err
    code, out, err = gm(capsys, "cache", "prune", "--max-gb", "0", "--cache-dir", root)
    assert code == 0, err
    assert out.startswith("removed 3 entries") and "kept 0" in out
    assert ProbeCache(root).entries() == []
    file = root.parent / "a-file"
    file.write_text("x")
    code, _, err = gm(capsys, "cache", "info", "--cache-dir", file)
    assert code == 2 and err.count("\n") == 1 and "is a file" in err
    monkeypatch.setenv("GREENMACHINE_CACHE", str(file))
    code, _, err = gm(capsys, "cache", "prune", "--max-gb", "1")
    assert code == 2 and err.count("\n") == 1 and "not a folder" in err
    # a command run with a bad cap in the environment stops before any work, in one line
    monkeypatch.setenv("GREENMACHINE_CACHE_MAX_GB", "many")
    code, _, err = gm(capsys, "score", "/nonexistent/proxy.json", "--cache-dir", root)
    assert code == 2 and err.count("\n") == 1
