"""Progress for people (a rich progress bar, or plain lines) and for programs
(a JSON-lines stream the bot reads).

The stream (default `{output-dir}/progress.jsonl`) gets one JSON object per
line, flushed at once; every object has `event` and `time` (Unix seconds):

- `start`: `total_steps`, `epochs`, `steps_per_epoch`, `step` (> 0 when resumed)
- `step` (every optimizer step): `step`, `total_steps`, `epoch`, `loss`, `lr`,
  `eta_s`, `elapsed_s`, `steps_per_s`
- `validation`: `step`, `epoch`, `val_loss`
- `checkpoint`: `step`, `epoch`, `path`
- `sample`: `step`, `epoch`, `paths`
- `done` / `stopped`: `step`, `epoch`, `adapter` (the engine-loadable folder),
  `reason` (for `stopped`)
- `error`: `message`

A resumed run appends to the same file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO


class ProgressStream:
    def __init__(self, path: Path | None):
        self.path = path
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open on purpose)

    def emit(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events written since byte `offset`, and the offset to read from next.
    A line still being written (no newline yet) is left for the next call."""
    if not path.is_file():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    events = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return events, offset + end


class Eta:
    """Seconds left, from the pace of the steps taken in this process."""

    def __init__(self, first_step: int, total: int):
        self.first = first_step
        self.total = total
        self.started = time.monotonic()

    def update(self, step: int) -> tuple[float, float, float | None]:
        """(elapsed s, steps per s, eta s)."""
        elapsed = time.monotonic() - self.started
        done = step - self.first
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else None
        return elapsed, rate, eta


class ConsoleProgress:
    """A rich bar with loss, LR and ETA; plain lines when `plain` or piped."""

    def __init__(self, total: int, start: int, *, plain: bool, log_every: int):
        self.plain = plain or not sys.stdout.isatty()
        self.log_every = log_every
        self.total = total
        self._progress = None
        if not self.plain:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("lr {task.fields[lr]}"),
                TextColumn("epoch {task.fields[epoch]}"),
                TimeRemainingColumn(),
            )
            self._task = self._progress.add_task("train", total=total, completed=start, loss="-", lr="-", epoch="-")
            self._progress.start()

    def update(self, step: int, epoch: int, loss: float, lr: float, eta: float | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", lr=f"{lr:.2e}", epoch=epoch)
        elif step % self.log_every == 0 or step == self.total:
            left = f"{eta / 60:.1f} min" if eta is not None else "?"
            print(
                f"step {step}/{self.total}  epoch {epoch}  loss {loss:.4f}  lr {lr:.2e}  eta {left}",
                flush=True,
            )

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
