"""Files a user hands over, and result files written so that nothing is half-written, mixed or lost.

Writing: a result appears only once complete (:func:`atomic_open` writes a uniquely named temporary file in the
same folder, then ``os.replace``), so a run stopped mid-write, or two runs writing the same name, never leave a
half or mixed file; :func:`check_writable_file` / :func:`check_writable_dir` refuse an ``--out`` that cannot be
written before any work starts, not after an hour of probing.

Reading: :func:`read_user_bytes` opens only regular files (a FIFO or a device would block or never end), without
blocking, and refuses files larger than a stated limit; :func:`load_json` adds a nesting-depth limit (Python's
JSON parser recurses, so a file of 100,000 ``[`` would otherwise end in a RecursionError).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from greenmachine.errors import GreenmachineError

MAX_JSON_DEPTH = 64  # deeper than any file greenmachine writes (proxy.json nests 3 levels)


@contextmanager
def atomic_open(path: str | Path, newline: str | None = None, binary: bool = False) -> Iterator[IO]:
    """A file (text, or bytes with ``binary``) that appears at ``path`` (parent folders made) only once the block
    has finished.

    The temporary file has a unique name (``tempfile.mkstemp`` in the same folder, so ``os.replace`` stays an
    atomic rename on one file system): two writers never share it, and the last complete file wins. A writer killed
    mid-block leaves ``.<name>.*.tmp`` behind, which ``cache prune`` removes from the probe cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline=newline)) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def read_user_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a file a user named, refusing anything but a regular file of at most ``max_bytes``.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open descriptor, so a FIFO with no writer or a
    device is refused at once, without blocking and without a race between the check and the read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise GreenmachineError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise GreenmachineError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise GreenmachineError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise GreenmachineError(f"{what} {path} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise GreenmachineError(f"{what} {path} is not a regular file (a FIFO, socket or device is not read)")
        if info.st_size > max_bytes:
            raise GreenmachineError(f"{what} {path} is {info.st_size} bytes; the limit is {max_bytes} bytes")
        os.set_blocking(fd, True)
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise GreenmachineError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # grew while being read
        raise GreenmachineError(f"{what} {path} is larger than the limit of {max_bytes} bytes")
    return data


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), computed without recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth = max(depth, level)
        stack.extend((c, level + 1) for c in children)
    return depth


def load_json(path: str | Path, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a user's JSON file with the limits of :func:`read_user_bytes` and a nesting-depth limit."""
    raw = read_user_bytes(path, what, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GreenmachineError(f"{what} {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    # a quick bound before parsing: the parser recurses once per open bracket
    if _bracket_depth(text) > max_depth:
        raise GreenmachineError(f"{what} {path} nests deeper than {max_depth} levels")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GreenmachineError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise GreenmachineError(f"{what} {path} nests deeper than {max_depth} levels") from None
    if json_depth(data) > max_depth:
        raise GreenmachineError(f"{what} {path} nests deeper than {max_depth} levels")
    return data


def _bracket_depth(text: str) -> int:
    """Maximum nesting of ``[``/``{`` outside JSON strings (an upper bound on the parsed depth)."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(".")


def check_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Refuse a folder that cannot be created or written, before any work starts."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GreenmachineError(f"{what} {path} exists and is not a folder")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise GreenmachineError(f"{what} {path} cannot be created: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise GreenmachineError(f"{what} {path} cannot be written: no write permission in {base}")
    return path


def check_writable_file(path: str | Path, what: str = "--out") -> Path:
    """Refuse a result file path that cannot be written (a folder, under a file, no permission), before work."""
    path = Path(path)
    if path.is_dir():
        raise GreenmachineError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise GreenmachineError(f"{what} {path} exists and is not a regular file")
    check_writable_dir(path.parent, what=f"{what} {path}: the folder")
    return path
