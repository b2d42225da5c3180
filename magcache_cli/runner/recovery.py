"""Nothing computed is lost: a result that cannot be written where asked goes to a recovery file.

Writes are atomic (a temporary file in the target's folder, then `os.replace`): an interrupted or failed
write leaves no partial file and an existing file untouched. When the target cannot be written (disk
full, permissions, a folder removed meanwhile), the same bytes go next to it as `<name>.recovered<ext>`,
or into the temp dir if that fails too, and `RecoveredError` says where.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from magcache_cli.errors import MagCacheError


class RecoveredError(MagCacheError):
    """The result could not be written to `path`; it was saved to `recovered` instead."""

    def __init__(self, path: Path, recovered: Path, cause: BaseException):
        why = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        super().__init__(f"could not write {path} ({why}); the result was saved to {recovered}",
                         hint=f"move {recovered} into place once the problem is fixed")
        self.path, self.recovered, self.why = Path(path), Path(recovered), why


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` into a temporary file beside `path`, then move it into place. On any failure (Ctrl-C
    included) the temporary file is removed and `path` is as it was. The temp name keeps the suffix, so
    writers that choose a format by extension still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def recovery_paths(path: Path) -> list[Path]:
    """Where a result meant for `path` is saved instead: beside it, else in the temp dir (time-stamped, so an
    earlier recovery is never replaced)."""
    path = Path(path)
    name = f"{path.stem}.recovered-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}"
    return [path.with_name(name), Path(tempfile.gettempdir()) / "magcache-recovered" / name]


def write_or_recover(path: Path, write: Callable[[Path], Path]) -> Path:
    """`write(path)` (which returns the path it wrote); if that fails with an OSError, `write` each recovery
    path in turn and raise RecoveredError naming the one that worked. If none works, the first error stands."""
    try:
        return write(Path(path))
    except OSError as first:
        for alt in recovery_paths(Path(path)):
            try:
                written = write(alt)
            except OSError:
                continue
            raise RecoveredError(Path(path), written, first) from first
        raise
