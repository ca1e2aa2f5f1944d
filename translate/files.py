"""Files that are never left half-written: tokenizer models, reports, translations and checkpoints go
to a temporary file in the same folder, are synced, then renamed over the old file in one step."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: never a truncated file. As with a plain
    `open`, a symlink is written through to its target, an existing file keeps its permissions, and a new one
    gets 0o666 less the umask (mkstemp's are owner-only)."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~umask
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(directory: Path) -> None:
    """Fail early, naming the directory, when files cannot be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise PermissionError(f"directory {directory} is not writable ({type(e).__name__}: {e})") from e


def write_lines(path: Path, lines: list[str]) -> None:
    """One line per string, each ended by a newline, written atomically (UTF-8)."""
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def write_json(path: Path, value: object) -> None:
    """`value` as indented JSON (non-ASCII kept), written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
