"""Atomic file output: every result, report, figure and checkpoint goes through here.

A file is written to a temporary file in the same directory, flushed and fsync'ed, given the
usual mode (0666 minus the umask; ``mkstemp`` creates 0600), then moved over the target with
``os.replace``. A reader never sees a half-written file; on any error the temporary file is
removed and the old file (if any) stays.

Several files that belong together (a report and its figures) are built in a
:class:`StagedDir` and moved into place only when all of them are written. Temporary files and
staging directories that are in use are recorded, so that :func:`discard_pending` (called by
the command line's signal handler before it exits) removes them; a staging directory left by a
process that was killed outright (SIGKILL) is removed by the next :class:`StagedDir` in the same
directory. :func:`check_writable_dir` and :func:`check_writable_file` test an output location
before any work starts, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_path", "write_atomic", "write_bytes_atomic", "write_text_atomic", "StagedDir",
           "discard_pending", "check_writable_dir", "check_writable_file", "strict_json", "write_json_atomic",
           "NULL_REASONS"]

# Temporary files and staging directories of this process that are being written; removed by
# discard_pending() when the process is stopped by a signal.
_PENDING: set[str] = set()
_PENDING_LOCK = threading.Lock()


def _pending(path: str, add: bool) -> None:
    with _PENDING_LOCK:
        (_PENDING.add if add else _PENDING.discard)(path)


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (``fig.savefig(tmp)``, ``np.savez(tmp)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    _pending(tmp, True)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        _pending(tmp, False)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fh)`` on a binary file handle, then move the file into place atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text with '\\n' line endings, written atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


#: Key added to a JSON object by :func:`strict_json` when it held a non-finite number.
NULL_REASONS = "null_reasons"


def _reason(key: str, value: float) -> str:
    what = "NaN" if math.isnan(value) else ("+inf" if value > 0 else "-inf")
    if math.isnan(value):
        return f"{what}: undefined (e.g. no value to average, an empty group, or not measured)"
    return (f"{what}: unbounded (e.g. a confidence bound from a single seed, where no interval exists, or a "
            f"ratio whose denominator is 0)")


def _strict(obj):
    """``obj`` with numpy values as Python ones and every non-finite float as None; a dict
    that held one gets :data:`NULL_REASONS` ``{key: why}``."""
    if isinstance(obj, dict):
        out, why = {}, {}
        for k, v in obj.items():
            k = str(k)
            if type(v).__module__ == "numpy" and getattr(v, "ndim", 1) == 0:  # a numpy scalar
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                out[k], why[k] = None, _reason(k, v)
            else:
                out[k] = _strict(v)
        if why:
            out[NULL_REASONS] = {**(out.get(NULL_REASONS) or {}), **why}
        return out
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":  # numpy array or scalar
        return _strict(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # in a list: the position says which; the containing object has no key for it
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def strict_json(obj, **kwargs) -> str:
    """``obj`` as strict JSON (RFC 8259: no ``NaN``/``Infinity``, which strict parsers refuse):
    a non-finite number becomes ``null`` and, inside an object, its key gets a reason in
    ``null_reasons`` (e.g. ``{"lo": null, "hi": null, "null_reasons": {"lo": "-inf: unbounded
    ..."}}``). numpy scalars and arrays become numbers and lists. ``kwargs`` go to
    :func:`json.dumps` (``indent``, ``sort_keys``)."""
    return json.dumps(_strict(obj), allow_nan=False, **kwargs)


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int | None = 1) -> None:
    """``obj`` as strict JSON (:func:`strict_json`, a final newline), written atomically."""
    write_text_atomic(path, strict_json(obj, indent=indent) + "\n")


def discard_pending() -> list[str]:
    """Remove every temporary file and staging directory this process is writing; return them.

    Safe to call from a signal handler's thread: it never raises.
    """
    with _PENDING_LOCK:
        paths = sorted(_PENDING, key=len, reverse=True)
        _PENDING.clear()
    for p in paths:
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass
    return paths


_STAGING_PREFIX = ".linsam-staging-"
_STAGING_RE = re.compile(re.escape(_STAGING_PREFIX) + r"(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StagedDir:
    """Files that belong together, built in a staging directory and moved in at the end.

    ``StagedDir(target, last=("report.md",))`` creates ``target/.linsam-staging-<pid>-<random>/``
    (``stage.path``). Write the outputs there (any layout). :meth:`commit` then

    1. removes the ``last`` files from ``target`` (the old result no longer looks finished),
    2. moves every staged file to the same place under ``target`` (``os.replace``: each file
       is whole; old files that this run did not write are left alone),
    3. moves the ``last`` files in (``report.md`` last: its presence marks a finished result),
    4. removes the staging directory.

    Until :meth:`commit`, ``target`` is untouched: a run that fails, is interrupted
    (:meth:`discard`, or :func:`discard_pending` from a signal handler) or is killed outright
    leaves the previous result as it was. The staging directory of a killed process (its pid no
    longer runs) is removed by the next ``StagedDir`` on the same target. A ``target`` that this
    object created is removed again on :meth:`discard` if it is empty.
    """

    def __init__(self, target: str | os.PathLike, *, last: tuple[str, ...] = ()):
        self.target = Path(target)
        self.last = tuple(last)
        self._created = [] if self.target.is_dir() else _missing_dirs(self.target)
        self.target.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        self.path = Path(tempfile.mkdtemp(dir=self.target, prefix=f"{_STAGING_PREFIX}{os.getpid()}-"))
        _pending(str(self.path), True)
        for d in self._created:  # a target created here goes if the run does not finish
            _pending(str(d), True)

    def _remove_stale(self) -> None:
        for p in self.target.glob(f"{_STAGING_PREFIX}*"):
            m = _STAGING_RE.match(p.name)
            if m and p.is_dir() and not _alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)

    def final(self, path: str | os.PathLike) -> Path:
        """Where staged ``path`` will be after :meth:`commit`."""
        return self.target / Path(path).resolve().relative_to(self.path.resolve())

    def commit(self) -> list[Path]:
        """Move the staged files into ``target`` (see the class doc); return their final paths."""
        files = sorted(p for p in self.path.rglob("*") if p.is_file() or p.is_symlink())
        rel = [p.relative_to(self.path) for p in files]
        last = [r for r in rel if str(r) in self.last]
        last.sort(key=lambda r: self.last.index(str(r)))
        first = [r for r in rel if str(r) not in self.last]
        for name in self.last:  # the old result stops looking finished before anything moves
            with contextlib.suppress(FileNotFoundError):
                (self.target / name).unlink()
        moved = []
        for r in first + last:
            dest = self.target / r
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path / r, dest)
            moved.append(dest)
        shutil.rmtree(self.path, ignore_errors=True)
        self._forget()
        return moved

    def discard(self) -> None:
        """Remove the staging directory (and ``target`` if this object created it and it is empty)."""
        shutil.rmtree(self.path, ignore_errors=True)
        for d in reversed(self._created):
            with contextlib.suppress(OSError):
                d.rmdir()
        self._forget()

    def _forget(self) -> None:
        _pending(str(self.path), False)
        for d in self._created:
            _pending(str(d), False)

    def __enter__(self) -> StagedDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.path.exists():
            self.discard()


def _missing_dirs(path: Path) -> list[Path]:
    """The directories that ``mkdir(parents=True)`` of ``path`` would create, outermost first."""
    missing = []
    q = path
    while not q.exists() and not q.is_symlink() and q != q.parent:
        missing.append(q)
        q = q.parent
    return missing[::-1]


def check_writable_dir(path: str | os.PathLike) -> None:
    """Raise ValueError (saying why) unless directory ``path`` exists or can be created, and a file
    can be written in it. Checked by doing it: missing directories are created, a probe file is
    written, and both are removed again, so nothing is left behind."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError("exists and is not a directory")
    missing = _missing_dirs(p)
    base = missing[0].parent if missing else p
    if missing and not base.is_dir():
        raise ValueError(f"{str(base)!r} is not a directory")
    created = []
    try:
        for d in missing:
            try:
                os.mkdir(d)
            except OSError as err:
                raise ValueError(f"cannot create directory {str(d)!r} ({err.strerror})") from None
            created.append(d)
        try:
            fd, probe = tempfile.mkstemp(dir=p, prefix=".linsam-probe-")
        except OSError as err:
            raise ValueError(f"cannot write in it ({err.strerror})") from None
        os.close(fd)
        os.unlink(probe)
    finally:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()


def check_writable_file(path: str | os.PathLike) -> None:
    """Raise ValueError unless file ``path`` can be written atomically (its directory is
    writable or creatable, and ``path`` is not a directory). Leaves nothing behind."""
    p = Path(path)
    if p.is_dir():
        raise ValueError("is a directory")
    if p.name in ("", ".", ".."):
        raise ValueError("is not a file name")
    try:
        check_writable_dir(p.parent)
    except ValueError as err:
        raise ValueError(f"its directory {str(p.parent)!r}: {err}") from None
