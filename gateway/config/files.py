"""File modes of what the config points at: secret files, and the log files and their folders.

A secret file other users can read, or an audit log other users can read or write, undoes the
redaction and the chain. ``check-config`` warns about both; at start the gateway tightens the
log files and folders it owns (it never changes secret files: another owner may manage them).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.schema import LoggingConfig

log = logging.getLogger("smsgw")

LOG_FILE_MODE = 0o600
LOG_DIR_MODE = 0o750


def open_to_others(path: Path) -> int | None:
    """The permission bits of a secret file when group or others have any, else ``None``."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


@dataclass(frozen=True, slots=True)
class LooseMode:
    """An existing log file or folder with permission bits beyond ``wanted``."""

    key: str
    path: Path
    kind: str  # "file" or "folder"
    mode: int
    wanted: int
    ours: bool  # owned by this user and not a shared sticky folder: the gateway may tighten it

    @property
    def tightened(self) -> int:
        return self.mode & ~(0o777 & ~self.wanted)

    def warning(self) -> str:
        where = f"{self.kind} {self.path} has mode {self.mode:04o}, wider than {self.wanted:04o}"
        if self.ours:
            return f"{where}; smsgw sets {self.tightened:04o} when it starts"
        return f"{where}; set it to {self.tightened:04o} (smsgw changes only what this user owns)"


def _loose(key: str, path: Path, kind: str, wanted: int, stems: tuple[str, ...] = ()) -> LooseMode | None:
    try:
        st = path.stat()  # through a symlink: the target holds the records
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o777 & ~wanted:
        return None
    ours = st.st_uid == os.geteuid() and not mode & stat.S_ISVTX
    if ours and kind == "folder":
        ours = _only_logs(path, stems)
    return LooseMode(key, path, kind, mode, wanted, ours)


def _only_logs(folder: Path, stems: tuple[str, ...]) -> bool:
    """A folder is smsgw's own only when it holds nothing but its log files (rotated ones too):
    ``/var/log`` or a home folder is never tightened, however the gateway is run."""
    try:
        return all(entry.name.startswith(stems) for entry in folder.iterdir())
    except OSError:
        return False


def loose_log_modes(settings: LoggingConfig, base_dir: Path) -> list[LooseMode]:
    """Existing log files wider than 0600 and their folders wider than 0750, each folder once."""
    found: list[LooseMode] = []
    seen_dirs: set[Path] = set()
    logs = [
        (key, Path(value) if Path(value).is_absolute() else base_dir / value)
        for key, value in (
            ("logging.audit_log", settings.audit_log),
            ("logging.access_log", settings.access_log),
        )
        if value != "-"
    ]
    stems = tuple(path.stem for _, path in logs)
    for key, path in logs:
        folder = path.parent
        if folder not in seen_dirs:
            seen_dirs.add(folder)
            loose = _loose(key, folder, "folder", LOG_DIR_MODE, stems)
            if loose is not None:
                found.append(loose)
        loose = _loose(key, path, "file", LOG_FILE_MODE)
        if loose is not None:
            found.append(loose)
    return found


def tighten_log_modes(settings: LoggingConfig, base_dir: Path) -> list[str]:
    """Set the log files and folders this user owns to at most 0600/0750; say so in one line.

    Called at start, before the sinks open. Returns what was changed.
    """
    changes: list[str] = []
    for loose in loose_log_modes(settings, base_dir):
        if not loose.ours:
            continue
        try:
            os.chmod(loose.path, loose.tightened)
        except OSError as exc:
            changes.append(f"{loose.path} {loose.mode:04o} (not changed: {exc.strerror})")
        else:
            changes.append(f"{loose.path} {loose.mode:04o}->{loose.tightened:04o}")
    if changes:
        log.warning("tightened log file modes: %s", ", ".join(changes))
    return changes
