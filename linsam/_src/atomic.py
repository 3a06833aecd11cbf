"""Atomic file output: every result, report, figure and checkpoint goes through here.

A file is written to a temporary file in the same directory, flushed and fsync'ed, given the
usual mode (0666 minus the umask; ``mkstemp`` creates 0600), then moved over the target with
``os.replace``. A reader never sees a half-written file; on any error the temporary file is
removed and the old file (if any) stays.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


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
