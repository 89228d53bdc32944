"""The record of a training run on disk, so a restarted bot finds a run it lost.

While a run goes, `DATA_DIR/training-run.json` says which process trains,
for which server and adapter, and where it writes. The bot removes it once
the run has ended and its adapter was exported. If the bot was killed
meanwhile (SIGKILL, a crash, a power cut), the next start finds the record:

1. the trainer, if it still runs, is stopped (its stop file, then SIGTERM,
   then SIGKILL). It normally ends on its own first: it gets SIGTERM when the
   bot dies and saves what it learnt (training.launcher);
2. what the run saved (`final/adapter`) is exported under the adapter's name,
   and the server that started it is told so (or that nothing was saved);
3. only then does the music worker start, so it never shares the GPU with a
   trainer nobody watches.

Old run folders are cleaned up too: a run exported into ADAPTERS_DIR leaves
no folder; of the runs that failed, the last `KEPT_FAILED_RUNS` are kept for
their `console.log`. Everything here blocks (files, waiting for a process):
call it in a thread. No discord import.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger("bot.training.record")

RECORD_FILE = "training-run.json"
RUNS_FOLDER = "training-runs"
KEPT_FAILED_RUNS = 3
#: Seconds an orphaned trainer gets to save and exit after each request to stop.
ORPHAN_GRACE = (120.0, 30.0)


@dataclass(frozen=True)
class RunRecord:
    pid: int
    guild_id: int
    channel_id: int | None
    name: str  # as people see it
    key: str  # the folder in ADAPTERS_DIR it is exported to
    dataset: str
    output_dir: str
    started_at: float
    run_id: int | None = None  # its row in the store (bot.store.training)
    kind: str = "train"  # or "preprocess"

    @property
    def folder(self) -> Path:
        return Path(self.output_dir)


def record_path(data_dir: Path) -> Path:
    return data_dir / RECORD_FILE


def write_record(data_dir: Path, record: RunRecord) -> None:
    """Write the record atomically (a half-written record is never read)."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(partial, path)


def read_record(data_dir: Path) -> RunRecord | None:
    """The record of a run that did not end cleanly, or None. A record that cannot
    be read is logged and dropped: there is nothing to act on."""
    path = record_path(data_dir)
    try:
        data: Any = json.loads(path.read_text())
        names = {f.name for f in fields(RunRecord)}
        record = RunRecord(**{key: data[key] for key in names if key in data})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the unreadable training record %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None
    runs = (data_dir / RUNS_FOLDER).resolve()
    if runs not in record.folder.resolve().parents:
        log.warning("ignoring the training record %s: its folder is outside %s", path, runs)
        path.unlink(missing_ok=True)
        return None
    return record


def clear_record(data_dir: Path) -> None:
    record_path(data_dir).unlink(missing_ok=True)


def trainer_alive(record: RunRecord) -> bool:
    """Is the record's trainer still running? On Linux the process must also be a
    `training.launcher` process of this run (a recycled pid is not)."""
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: not ours
    cmdline = Path(f"/proc/{record.pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return b"training.launcher" in words and any(word.startswith(record.output_dir.encode()) for word in words)
    return True


def stop_orphan(record: RunRecord, stop_file: Path | None) -> bool:
    """Stop the record's trainer if it still runs; True when it had to be stopped.

    The stop file first (it saves what it learnt), then SIGTERM (the same), then
    SIGKILL; without a stop file (preprocessing has none) SIGTERM at once. Not our
    child: it is watched by its pid until it is gone."""
    if not trainer_alive(record):
        return False
    log.warning("the trainer of adapter %r (pid %d) outlived the bot: stopping it", record.name, record.pid)
    steps = zip(ORPHAN_GRACE, (signal.SIGTERM, signal.SIGKILL), strict=True)
    if stop_file is None:
        os.kill(record.pid, signal.SIGTERM)
        steps = zip(ORPHAN_GRACE[1:], (signal.SIGKILL,), strict=True)
    else:
        stop_file.parent.mkdir(parents=True, exist_ok=True)
        stop_file.touch()
    for grace, then in steps:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not trainer_alive(record):
                return True
            time.sleep(0.2)  # a timer: another process is exiting
        log.warning("the trainer (pid %d) is still running: sending %s", record.pid, then.name)
        try:
            os.kill(record.pid, then)
        except ProcessLookupError:
            return True
    while trainer_alive(record):
        time.sleep(0.2)
    return True


def prune_run_folders(data_dir: Path, keep: Path | None = None) -> list[Path]:
    """Remove run folders left behind, keeping `keep` and the newest failed ones."""
    runs = data_dir / RUNS_FOLDER
    if not runs.is_dir():
        return []
    folders = sorted((p for p in runs.iterdir() if p.is_dir() and p != keep), key=lambda p: p.stat().st_mtime)
    removed = folders[: max(0, len(folders) - KEPT_FAILED_RUNS)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed the old training run folder %s", folder)
    return removed


def remove_run_folder(folder: Path) -> None:
    """A run exported into ADAPTERS_DIR needs its folder no more (tensors, checkpoints)."""
    shutil.rmtree(folder, ignore_errors=True)
