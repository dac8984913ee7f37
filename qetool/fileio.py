"""Atomic output: every file qetool writes appears whole or not at all.

A regular file (new or existing) is written to a temporary file beside its target and renamed
onto it. A symlink is followed: the file it points to is written that way, in the target's
folder, and the link stays. An existing device, FIFO or socket (/dev/null, /dev/stdout) is
written directly, never replaced. New files get the umask's mode; a replaced file keeps its own.
A failure (no such folder, a read-only or full disk, /proc) is one QetoolError naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from qetool.errors import QetoolError

if TYPE_CHECKING:
    import numpy as np


def write_error(path: str | os.PathLike, e: OSError) -> QetoolError:
    """One line for a failed write of `path`."""
    if e.errno == errno.ENOSPC:
        return QetoolError(f"{path}: no space left on the device (nothing was written)")
    return QetoolError(f"cannot write {path}: {e.strerror or e}")


def umask_mode(base: int = 0o666) -> int:
    """`base` less the process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _existing(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the path to write `path`'s new content to (see the module docstring)."""
    target = Path(os.path.realpath(path))
    try:
        st = _existing(target)
        if st is not None and not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                raise QetoolError(f"cannot write {path}: it is a directory")
            yield target
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, stat.S_IMODE(st.st_mode) if st is not None else umask_mode())
        os.replace(tmp, target)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (strings skipped), found without parsing."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            escaped, in_str = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class JsonError(QetoolError):
    """A text that is not acceptable JSON; `reason` says why (without the file's name)."""

    def __init__(self, where: str, reason: str):
        self.reason = reason
        super().__init__(f"{where}: {reason}")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"key {k!r} appears twice in one object")
        seen.add(k)
    return dict(pairs)


def parse_json(text: str, where: str, max_depth: int = 32) -> object:
    """JSON text -> data, refusing duplicate keys and nesting deeper than `max_depth` (which
    would exhaust the parser's recursion); every failure is a JsonError naming `where`."""
    if json_depth(text) > max_depth:
        raise JsonError(where, f"nested more than {max_depth} levels deep")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise JsonError(where, f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except ValueError as e:  # a duplicate key
        raise JsonError(where, str(e)) from None


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's content; unreadable: one QetoolError."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise QetoolError(f"{path}: cannot read ({e.strerror or e})") from None


def read_text(path: str | os.PathLike, what: str = "text") -> str:
    """A UTF-8 text file's content; unreadable or not UTF-8: one QetoolError (`what` names the
    kind of file expected)."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QetoolError(f"{path}: not a UTF-8 text file (byte {e.start}): {what} expected") from None


def read_json(path: str | os.PathLike, max_depth: int = 32) -> object:
    """A JSON file (UTF-8) -> data; unreadable, not text or not JSON: one QetoolError."""
    return parse_json(read_text(path, "JSON"), str(path), max_depth)


def read_npy(path: str | os.PathLike) -> "np.ndarray":
    """One array from an .npy file (no pickles); unreadable or not an array: one QetoolError."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise QetoolError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError) as e:
        raise QetoolError(f"{path}: not a readable .npy array ({e})") from None


def read_npz(path: str | os.PathLike, what: str) -> dict[str, "np.ndarray"]:
    """Every array of an .npz file, read eagerly (no pickles); a missing, empty, truncated or
    damaged file (the zip's CRC-32 catches flipped bits) is one QetoolError naming `what`."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise QetoolError(f"{path}: no such file (the {what})") from None
    except (OSError, EOFError, ValueError, SyntaxError, KeyError, NotImplementedError,
            zipfile.BadZipFile) as e:  # what zipfile and numpy raise for broken files
        raise QetoolError(f"{path}: not a readable {what} (empty, truncated or damaged: {e})") from None
