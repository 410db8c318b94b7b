"""Code execution from data files: image pickles and official NATS-Bench files are read with a restricted unpickler.

Every planted file here would run code under ``pickle.load``; the payload makes a folder (no shell), and each test
checks that the folder does not exist afterwards, i.e. that nothing ran, and that the refusal is one line naming
the file and the refused global.
"""

from __future__ import annotations

import bz2
import codecs
import io
import os
import pickle
import signal
import sys

import numpy as np
import pytest

from conftest import DATA, SSS_OFFICIAL, TSS_OFFICIAL
from greenmachine.errors import GreenmachineError
from greenmachine.probing import datasets
from greenmachine.safepickle import safe_load

OFFICIAL_FILES = sorted(TSS_OFFICIAL.glob("*.pickle.pbz2")) + sorted(SSS_OFFICIAL.glob("*.pickle.pbz2"))
IMAGE_FILES = [DATA / "images" / "cifar-10-batches-py" / "data_batch_1", DATA / "images" / "cifar-10-batches-py" /
               "batches.meta", DATA / "images" / "cifar-100-python" / "train",
               DATA / "images" / "ImageNet16" / "train_data_batch_1"]


class Payload:
    """What an attacker plants: unpickling calls ``os.mkdir(marker)``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _equal(a, b) -> bool:
    """Deep equality of unpickled data (numpy arrays compared by dtype, shape and values)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and type(a) is type(b) and a.keys() == b.keys() and all(
            _equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here


def _one_line_naming(exc: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("path", IMAGE_FILES, ids=lambda p: p.name)
def test_real_image_pickles_load_as_plain_pickle_does(path):
    with open(path, "rb") as f:
        reference = pickle.load(f, encoding="latin1")
    assert _equal(safe_load(path), reference)


@pytest.mark.parametrize("path", OFFICIAL_FILES, ids=lambda p: f"{p.parent.name[:8]}-{p.name}")
def test_official_nats_files_load_as_plain_pickle_does(path):
    with bz2.BZ2File(path) as f:
        reference = pickle.load(f)
    assert _equal(safe_load(path, what="official NATS-Bench file"), reference)  # bz2 recognised by its magic
    with bz2.BZ2File(path) as f:  # and a bz2 file object, as nats_bench opens them
        assert _equal(safe_load(f, what="official NATS-Bench file"), reference)


def test_planted_cifar_batch_is_refused_without_running(tmp_path):
    folder = tmp_path / "images" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").symlink_to(DATA / "images" / "cifar-10-batches-py" / "data_batch_1")
    marker = tmp_path / "ran"
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": Payload(marker), "labels": []}, protocol=2))
    datasets.load_images.cache_clear()
    with pytest.raises(GreenmachineError) as exc:
        datasets.load_images(str(tmp_path), "cifar10")
    assert not marker.exists(), "the planted pickle ran code"
    _one_line_naming(exc, str(folder / "data_batch_2"), "mkdir")


def test_planted_imagenet_batch_is_refused_without_running(tmp_path):
    folder = tmp_path / "images" / "ImageNet16"
    folder.mkdir(parents=True)
    marker = tmp_path / "ran"
    (folder / "train_data_batch_1").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [1]}))
    datasets.load_images.cache_clear()
    with pytest.raises(GreenmachineError) as exc:
        datasets.probe_batch(str(tmp_path), "ImageNet16-120", 2, 0)
    assert not marker.exists()
    _one_line_naming(exc, "train_data_batch_1", "mkdir")


def test_planted_official_nats_file_is_refused_without_running(tmp_path):
    folder = tmp_path / TSS_OFFICIAL.name
    folder.mkdir()
    marker = tmp_path / "ran"
    planted = folder / "000011.pickle.pbz2"
    with bz2.BZ2File(planted, "wb") as f:
        pickle.dump({"full": Payload(marker)}, f, protocol=4)
    with pytest.raises(GreenmachineError) as exc:
        safe_load(planted, what="official NATS-Bench file")
    assert not marker.exists()
    _one_line_naming(exc, str(planted), "official NATS-Bench file", "mkdir")
    with bz2.BZ2File(planted) as f, pytest.raises(GreenmachineError) as exc:
        safe_load(f, what=f"official NATS-Bench file {planted}")
    assert not marker.exists()
    _one_line_naming(exc, str(planted), "mkdir")


@pytest.mark.parametrize(
    "name,build",
    [
        ("eval", lambda: pickle.dumps({"data": _reduce(eval, "1+1")})),
        ("getattr", lambda: pickle.dumps({"data": _reduce(getattr, 1, "real")})),
        ("subprocess", lambda: b"\x80\x02csubprocess\nPopen\nq\x00."),
        ("numpy object array", lambda: pickle.dumps({"data": np.array([1, "a"], dtype=object)})),
        ("another codec", lambda: pickle.dumps({"data": _reduce(codecs.encode, "abc", "rot13")}, protocol=2)),
        ("persistent id", lambda: _persistent()),
    ],
)
def test_anything_beyond_plain_data_is_refused(tmp_path, name, build):
    path = tmp_path / "data_batch_1"
    path.write_bytes(build())
    with pytest.raises(GreenmachineError) as exc:
        safe_load(path)
    _one_line_naming(exc, str(path))


def _reduce(fn, *args):
    class R:
        def __reduce__(self):
            return (fn, args)

    return R()


def _persistent() -> bytes:
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "x" if obj == "secret" else None

    P(buf).dump({"data": "secret"})
    return buf.getvalue()


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes((DATA / "images" / "cifar-10-batches-py" / "data_batch_1").read_bytes()[:5000])
    with pytest.raises(GreenmachineError) as exc:
        safe_load(path)
    _one_line_naming(exc, str(path), "cannot read")
    path.write_bytes(b"BZh91AY&SY not really bz2")
    with pytest.raises(GreenmachineError) as exc:
        safe_load(path)
    _one_line_naming(exc, str(path))


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs")
def test_a_fifo_named_like_a_batch_file_is_refused_without_blocking(tmp_path):
    folder = tmp_path / "images" / "cifar-100-python"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "train")
    datasets.load_images.cache_clear()

    def timeout(*_):
        raise TimeoutError("blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    try:
        with pytest.raises(GreenmachineError) as exc:
            datasets.load_images(str(tmp_path), "cifar100")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    _one_line_naming(exc, str(folder / "train"), "not a regular file")


def test_the_dataset_reader_never_calls_plain_pickle_load(tmp_path, monkeypatch):
    """The real files still load, with pickle.load and pickle.loads made to fail."""

    def forbidden(*args, **kwargs):
        raise AssertionError("plain pickle.load used on a data file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    datasets.load_images.cache_clear()
    x, y = datasets.load_images(str(DATA), "cifar10")
    assert x.shape[1:] == (3, 32, 32) and len(x) == len(y) > 0
    datasets.load_images.cache_clear()
