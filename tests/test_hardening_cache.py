"""Stale, foreign or damaged probes: the cache keys on the probed images and uses only entries that prove
themselves; anything else is re-probed, never used and never a permanent failure.

Real networks (NATS-Bench TSS index 11 and 284) on real CIFAR-10 images, batch 8, mostly the cheap synflow pass.
"""

from __future__ import annotations

import pickle
import shutil
import threading

import numpy as np
import pytest
import torch

from conftest import DATA
from greenmachine.probing import cache as cache_module
from greenmachine.probing import datasets
from greenmachine.probing.cache import ProbeCache, probe_sample
from greenmachine.probing.probe import GROUPS, NetworkProbe, ProbeSettings
from greenmachine.safepickle import safe_load
from greenmachine.workspace import probe_settings

A11 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
A284 = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|"  # official index 284
SETTINGS = ProbeSettings("tss", "cifar10", batch_size=8)


class Counter:
    """Counts the networks actually probed (wraps cache.probe_network)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[int, tuple[str, ...]]] = []
        real = cache_module.probe_network

        def counting(index, arch, settings, images, labels, groups=tuple(GROUPS)):
            self.calls.append((index, tuple(groups)))
            return real(index, arch, settings, images, labels, groups)

        monkeypatch.setattr(cache_module, "probe_network", counting)


def _data_dir_with(tmp_path, transform) -> str:
    """A data folder whose CIFAR-10 file holds the real images after ``transform`` (same labels)."""
    obj = safe_load(DATA / "images" / "cifar-10-batches-py" / "data_batch_1")
    obj["data"] = transform(np.asarray(obj["data"]))
    folder = tmp_path / "images" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return str(tmp_path)


def test_other_images_never_hit(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    items = [(11, A11)]
    probe_sample(items, SETTINGS, DATA, groups=("spectrum",), cache=ProbeCache(root, data_dir=DATA))
    counter = Counter(monkeypatch)
    probe_sample(items, SETTINGS, DATA, groups=("spectrum",), cache=ProbeCache(root, data_dir=DATA))
    assert counter.calls == []  # same images: a hit
    # the same file in another folder is the same minibatch: still a hit (the key is the content, not the path)
    same = _data_dir_with(tmp_path / "same", lambda d: d)
    probe_sample(items, SETTINGS, same, groups=("spectrum",), cache=ProbeCache(root, data_dir=same))
    assert counter.calls == []
    # other images (every pixel inverted) with the same file names, batch size and seed: probed again
    other = _data_dir_with(tmp_path / "other", lambda d: 255 - d)
    (probe,) = probe_sample(items, SETTINGS, other, groups=("spectrum",), cache=ProbeCache(root, data_dir=other))
    assert counter.calls == [(11, ("spectrum",))]
    (reference,) = probe_sample(items, SETTINGS, DATA, groups=("spectrum",), cache=ProbeCache(root, data_dir=DATA))
    assert counter.calls == [(11, ("spectrum",))]  # the first entry is still there, still a hit
    assert not torch.equal(probe.tensors["corr_eig"][0], reference.tensors["corr_eig"][0])


def test_settings_carry_the_minibatch_digest_computed_once(tmp_path, monkeypatch):
    calls = []
    real = datasets.batch_digest
    monkeypatch.setattr(datasets, "batch_digest", lambda *a: calls.append(1) or real(*a))
    datasets.images_digest.cache_clear()
    settings = probe_settings("tss", "cifar10", 8, 0, "cpu", data_dir=DATA)
    images, labels = datasets.probe_batch(str(DATA), "cifar10", 8, 0)
    assert settings.images_digest == real(images, labels) and len(settings.images_digest) == 64
    root = tmp_path / "cache"
    cache = ProbeCache(root)  # no data_dir: the digest comes from the settings
    probe_sample([(11, A11), (284, A284)], settings, DATA, groups=("synflow",), cache=cache)
    probe_sample([(11, A11), (284, A284)], settings, DATA, groups=("synflow",), cache=cache)
    assert calls == [1]  # once per protocol, not per network nor per lookup
    assert len(list(root.rglob("synflow-*.pt"))) == 2
    # another minibatch seed or another data-loading protocol is another digest
    assert probe_settings("tss", "cifar10", 8, 1, "cpu", data_dir=DATA).images_digest != settings.images_digest
    monkeypatch.setattr(datasets, "DATA_PROTOCOL", datasets.DATA_PROTOCOL + 1)
    assert real(images, labels) != settings.images_digest
    datasets.images_digest.cache_clear()


def test_without_a_digest_nothing_is_cached(pristine, tmp_path):
    """Settings without images_digest and a cache without data_dir: other images could hit, so no entry is
    written and none is read."""
    root, _ = _copy(pristine, tmp_path)
    before = sorted(root.rglob("*.pt"))
    cache = ProbeCache(root)
    assert cache.key(SETTINGS, 11, A11, "synflow") is None
    assert cache.load(SETTINGS, 11, A11, "synflow") is None  # the entry made with the digest is not used
    cache.save(SETTINGS, pristine[1], "synflow")
    assert sorted(root.rglob("*.pt")) == before


def _entry(root, group):
    (path,) = root.rglob(f"{group}-*.pt")
    return path, torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A cache holding every pass of network 11, probed once for the module."""
    root = tmp_path_factory.mktemp("pristine")
    (probe,) = probe_sample([(11, A11)], SETTINGS, DATA, groups=tuple(GROUPS), cache=ProbeCache(root, data_dir=DATA))
    return root, probe


def _copy(pristine, tmp_path):
    root = tmp_path / "cache"
    shutil.copytree(pristine[0], root)
    return root, ProbeCache(root, data_dir=DATA)


def _save(obj, path):
    torch.save(obj, path)


def _scaled(obj, name, value):
    return {**obj, "tensors": {**obj["tensors"], name: [torch.full_like(t, value) for t in obj["tensors"][name]]}}


DAMAGES = {
    "nan": ("synflow", lambda obj, path: _save(_scaled(obj, "synflow_grad", float("nan")), path)),
    "inf": ("synflow", lambda obj, path: _save(_scaled(obj, "synflow_grad", float("inf")), path)),
    "nan-kernel": ("ce", lambda obj, path: _save(_scaled(obj, "relu_kernel", float("nan")), path)),
    "pass-missing": ("synflow", lambda obj, path: _save({**obj, "tensors": {}}, path)),
    "no-key": ("synflow", lambda obj, path: _save({"tensors": obj["tensors"], "seconds": obj["seconds"]}, path)),
    "nan-seconds": ("synflow", lambda obj, path: _save({**obj, "seconds": float("nan")}, path)),
    "truncated": ("synflow", lambda obj, path: path.write_bytes(path.read_bytes()[:200])),
    "not-torch": ("spectrum", lambda obj, path: path.write_bytes(b"PK\x03\x04 not a zip")),
    "empty-list": ("spectrum", lambda obj, path: _save({**obj, "tensors": {"corr_eig": []}}, path)),
    "terminal-missing": ("ce", lambda obj, path: _save(
        {**obj, "tensors": {k: v for k, v in obj["tensors"].items() if k != "act_grad"}}, path)),
    "wrong-kernel-shape": ("ce", lambda obj, path: _save(
        {**obj, "tensors": {**obj["tensors"], "relu_kernel": [t[:4, :4] for t in obj["tensors"]["relu_kernel"]]}},
        path)),
    "layer-missing": ("ce", lambda obj, path: _save(
        {**obj, "tensors": {**obj["tensors"], "grad": obj["tensors"]["grad"][:-1]}}, path)),
    "two-jacobian-kernels": ("jacobian", lambda obj, path: _save(
        {**obj, "tensors": {"jacob_corr": obj["tensors"]["jacob_corr"] * 2}}, path)),
    "wrong-jacobian-shape": ("jacobian", lambda obj, path: _save(
        {**obj, "tensors": {"jacob_corr": [t[:4, :4] for t in obj["tensors"]["jacob_corr"]]}}, path)),
    "wrong-ntk-shape": ("ntk", lambda obj, path: _save(
        {**obj, "tensors": {"ntk": [t[:4, :4] for t in obj["tensors"]["ntk"]]}}, path)),
    "nan-ntk": ("ntk", lambda obj, path: _save(_scaled(obj, "ntk", float("nan")), path)),
    "two-swap-counts": ("swap", lambda obj, path: _save(
        {**obj, "tensors": {"swap": [torch.cat([t, t]) for t in obj["tensors"]["swap"]]}}, path)),
    "negative-swap": ("swap", lambda obj, path: _save(_scaled(obj, "swap", -1.0), path)),
    "wrong-dtype": ("synflow", lambda obj, path: _save(
        {**obj, "tensors": {"synflow_grad": [t.float() for t in obj["tensors"]["synflow_grad"]]}}, path)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_entries_are_misses(pristine, tmp_path, damage):
    root, cache = _copy(pristine, tmp_path)
    group, fn = DAMAGES[damage]
    path, obj = _entry(root, group)
    assert obj["key"] == cache.key(SETTINGS, 11, A11, group)  # an entry holds its key
    assert cache.load(SETTINGS, 11, A11, group) is not None
    fn(obj, path)
    assert cache.load(SETTINGS, 11, A11, group) is None


def test_a_folder_planted_under_an_entry_name_is_never_a_permanent_failure(pristine, tmp_path):
    root, cache = _copy(pristine, tmp_path)
    path, _ = _entry(root, "spectrum")
    path.unlink()
    path.mkdir()
    assert cache.load(SETTINGS, 11, A11, "spectrum") is None
    (probe,) = probe_sample([(11, A11)], SETTINGS, DATA, groups=("spectrum",), cache=cache)
    assert all(torch.equal(a, b) for a, b in zip(probe.tensors["corr_eig"], pristine[1].tensors["corr_eig"]))


@pytest.mark.parametrize("damage", ["nan", "terminal-missing"])
def test_a_damaged_entry_is_reprobed_and_healed(pristine, tmp_path, monkeypatch, damage):
    """Never used, never a permanent failure: the network is probed again and the entry rewritten."""
    root, cache = _copy(pristine, tmp_path)
    group, fn = DAMAGES[damage]
    path, obj = _entry(root, group)
    fn(obj, path)
    counter = Counter(monkeypatch)
    (again,) = probe_sample([(11, A11)], SETTINGS, DATA, groups=(group,), cache=cache)
    assert counter.calls == [(11, (group,))]
    first = pristine[1]
    for name in GROUPS[group]:
        assert all(torch.equal(a, b) for a, b in zip(first.tensors[name], again.tensors[name]))
    hit = cache.load(SETTINGS, 11, A11, group)
    assert hit is not None
    for name in GROUPS[group]:
        assert all(torch.equal(a, b) for a, b in zip(hit[0][name], first.tensors[name]))


def test_an_entry_of_another_architecture_is_never_used(pristine, tmp_path, monkeypatch):
    """A valid entry copied (or planted) under another network's name is refused: its stored key differs."""
    root, cache = _copy(pristine, tmp_path)
    path, obj = _entry(root, "synflow")
    target = cache._path(cache.key(SETTINGS, 284, A284, "synflow"), SETTINGS, "synflow")
    torch.save(obj, target)
    assert cache.load(SETTINGS, 284, A284, "synflow") is None
    counter = Counter(monkeypatch)
    (probe,) = probe_sample([(284, A284)], SETTINGS, DATA, groups=("synflow",), cache=cache)
    assert counter.calls == [(284, ("synflow",))]
    assert len(probe.tensors["synflow_grad"]) != len(obj["tensors"]["synflow_grad"]) or not all(
        torch.equal(a, b) for a, b in zip(probe.tensors["synflow_grad"], obj["tensors"]["synflow_grad"]))
    healed = cache.load(SETTINGS, 284, A284, "synflow")
    assert healed is not None and healed[0]["synflow_grad"][0].shape == probe.tensors["synflow_grad"][0].shape


def test_concurrent_writers_never_leave_a_half_or_mixed_entry(tmp_path):
    """Eight writers save two different probes under one key at once: the entry is always one whole probe."""
    root = tmp_path / "cache"
    cache = ProbeCache(root, data_dir=DATA)
    probes = [NetworkProbe(11, A11, {"synflow_grad": [torch.full((5000,), float(v), dtype=torch.float64)
                                                      for _ in range(20)]}, seconds=float(v)) for v in (1, 2)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(probe):
        try:
            start.wait()
            for _ in range(15):
                cache.save(SETTINGS, probe, "synflow")
                hit = cache.load(SETTINGS, 11, A11, "synflow")
                assert hit is not None
                tensors, seconds = hit
                assert all(float(t[0]) == seconds and bool((t == seconds).all()) for t in tensors["synflow_grad"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(probes[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert [p.name for p in root.rglob("*") if p.is_file()] == [next(root.rglob("synflow-*.pt")).name]  # no temp left


def _fail_writes(monkeypatch, code: int, message: str) -> None:
    """Cache writes that fail after 100 bytes with ``OSError(code)``, as a real full disk did once (torch.save's zip
    writer turned it into a RuntimeError, "unexpected pos", before the entry was serialised in memory first)."""
    real_fdopen = cache_module.os.fdopen

    class Failing:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(bytes(data)[:100])
            raise OSError(code, message)

    monkeypatch.setattr(cache_module.os, "fdopen", Failing)


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT"])
def test_a_full_disk_warns_once_and_probing_goes_on_uncached(pristine, tmp_path, monkeypatch, capsys, code):
    """A cache write on a full disk (or quota) does not end the run: one warning line, the temporary file goes,
    and later saves of this cache write nothing (no second warning, no second failed write)."""
    import errno

    root = tmp_path / "cache"
    cache = ProbeCache(root, data_dir=DATA)
    _fail_writes(monkeypatch, getattr(errno, code), "No space left on device")
    cache.save(SETTINGS, pristine[1], "synflow")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: the probe cache under {root} is out of space")
    assert "probing goes on without caching" in err
    assert not [p for p in root.rglob("*") if p.is_file()]
    assert cache.full is not None
    monkeypatch.undo()  # the disk has room again: this process still does not cache
    cache.save(SETTINGS, pristine[1], "synflow")
    assert capsys.readouterr().err == ""
    assert not [p for p in root.rglob("*") if p.is_file()]
    assert ProbeCache(root, data_dir=DATA).load(SETTINGS, pristine[1].index, pristine[1].arch, "synflow") is None


def test_another_write_error_is_one_line(pristine, tmp_path, monkeypatch):
    """Any other write error (here EACCES) is the one-line cache error, and leaves no temporary file."""
    import errno

    from greenmachine.errors import GreenmachineError

    root = tmp_path / "cache"
    cache = ProbeCache(root, data_dir=DATA)
    _fail_writes(monkeypatch, errno.EACCES, "Permission denied")
    with pytest.raises(GreenmachineError, match=r"cannot write the probe cache under .*Permission denied"):
        cache.save(SETTINGS, pristine[1], "synflow")
    assert not [p for p in root.rglob("*") if p.is_file()]
