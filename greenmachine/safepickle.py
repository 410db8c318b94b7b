"""Reading pickled data files without letting them run code.

The CIFAR / ImageNet16 "python version" files and the official NATS-Bench ``*.pickle.pbz2`` files are pickles by
design, and a pickle names Python callables that ``pickle.load`` imports and calls: a planted ``data_batch_9``
whose ``__reduce__`` returns ``(os.system, ("...",))`` runs that command. :func:`safe_load` reads them with an
:class:`pickle.Unpickler` whose ``find_class`` admits only what the real files contain, found by listing the
globals of the real files (CIFAR-10/100 and ImageNet16 batches, NATS-Bench TSS/SSS meta and per-architecture
files):

* numpy arrays, dtypes and scalars (``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.multiarray._reconstruct``
  and ``.scalar``; object dtypes are refused, since an object array can hold anything);
* ``collections.OrderedDict`` (NATS-Bench records) and the builtin containers and scalars;
* ``_codecs.encode`` with the latin-1 codec only (how protocol-2 pickles store ``bytes``).

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, a class of some installed package) is
refused before it is imported, with a one-line :class:`GreenmachineError` naming the file and the global.
"""

from __future__ import annotations

import bz2
import codecs
import io
import os
import pickle
import stat
from pathlib import Path
from typing import IO, Any

import numpy as np

from greenmachine.errors import GreenmachineError

BZ2_MAGIC = b"BZh"


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``; any other codec is refused."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1" or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return obj.encode("latin1")


def _plain_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for plain numbers and strings only: an object dtype would let an array hold any object."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object dtype is not allowed")
    return dtype


def _numpy_multiarray(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex",
             "bool")
ALLOWED: dict[tuple[str, str], Any] = {
    **{("builtins", n): getattr(__import__("builtins"), n) for n in _BUILTINS},
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{(mod, n): _numpy_multiarray(n)
       for mod in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED`; ``what`` names the file in errors."""

    def __init__(self, file: IO[bytes], *, encoding: str = "latin1", what: str = "data file") -> None:
        super().__init__(file, encoding=encoding)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise GreenmachineError(
                f"refused to read {self.what}: it asks for the Python global {module}.{name}, and only plain "
                "containers, numbers, strings and numpy arrays are read from data files"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise GreenmachineError(f"refused to read {self.what}: it holds a persistent reference")


def _open_regular(path: Path, what: str) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file (a FIFO or a device would block or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise GreenmachineError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise GreenmachineError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GreenmachineError(f"{what} {path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def safe_load(fileobj_or_path: str | Path | IO[bytes], encoding: str = "latin1", what: str = "dataset file") -> Any:
    """Unpickle a data file (plain or bz2-compressed) with :class:`RestrictedUnpickler`.

    A path is opened only if it is a regular file; a bz2 stream (the NATS-Bench ``.pbz2`` files) is recognised by
    its magic bytes and decompressed on the fly. A file object (e.g. a ``bz2.BZ2File``) is read as it is. Every
    failure, a refused global included, is one :class:`GreenmachineError` line naming the file.
    """
    if isinstance(fileobj_or_path, (str, Path)):
        path = Path(fileobj_or_path)
        label = f"{what} {path}"
        raw = _open_regular(path, what)
        with raw:
            if raw.read(3) == BZ2_MAGIC:
                raw.seek(0)
                stream: IO[bytes] = bz2.BZ2File(raw)
            else:
                raw.seek(0)
                stream = raw
            return _load(stream, encoding, label)
    name = getattr(fileobj_or_path, "name", None) or getattr(getattr(fileobj_or_path, "_fp", None), "name", None)
    label = f"{what} {name}" if isinstance(name, (str, Path)) else what
    return _load(fileobj_or_path, encoding, label)


def _load(stream: IO[bytes], encoding: str, label: str) -> Any:
    try:
        return RestrictedUnpickler(stream, encoding=encoding, what=label).load()
    except GreenmachineError:
        raise
    except (Exception, RecursionError) as exc:  # truncated, damaged or foreign bytes
        raise GreenmachineError(f"cannot read {label}: {type(exc).__name__}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def safe_loads(data: bytes, encoding: str = "latin1", what: str = "data") -> Any:
    """:func:`safe_load` for bytes in memory."""
    return _load(io.BytesIO(data), encoding, what)
