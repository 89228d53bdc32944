"""How preprocessing shows its progress: to people and to programs.

`preprocess()` tells its `PreprocessReport` how many tracks it found
(`start`), then what became of each (`track`: unchanged, pass 1 done,
encoded, or skipped with the reason). `PreprocessProgress` shows that as a
Rich bar on a terminal (the skipped tracks printed above it) or as one plain
line per event otherwise (`--plain`, a pipe, the bot's child), and writes
`preprocess` events to the progress stream (`done`, `total`, `key`, `what`),
so the bot can say how far the encoding is. The default report only logs.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO

from training.progress import ProgressStream

log = logging.getLogger("training.preprocess")

#: What a track's last event says when it is finished (the rest are steps on the way).
FINISHED = ("encoded", "unchanged", "skipped")


class PreprocessReport(Protocol):
    def start(self, total: int) -> None: ...

    def track(self, key: str, what: str) -> None: ...


class LogReport:
    """Log lines only (the library's default)."""

    def start(self, total: int) -> None:
        log.info("Preprocessing %d track(s)", total)

    def track(self, key: str, what: str) -> None:
        log.info("%s: %s", key, what)


class PreprocessProgress:
    """A bar or plain lines, plus `preprocess` events when `stream` is given."""

    def __init__(
        self,
        stream: ProgressStream | None = None,
        *,
        plain: bool = False,
        out: TextIO | None = None,
    ):
        self.stream = stream
        self.out = out or sys.stdout
        self.plain = plain or not self.out.isatty()
        self.total = 0
        self.done = 0
        self._bar = None

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        if self.stream is not None:
            self.stream.emit("preprocess", done=0, total=total, key=None, what="started")
        if self.plain:
            self._say(f"Preprocessing {total} track(s)")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("[bold]preprocessing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
        )
        self._task = self._bar.add_task("", total=total)
        self._bar.start()

    def track(self, key: str, what: str) -> None:
        if what.startswith(FINISHED):
            self.done += 1
        if self.stream is not None:
            self.stream.emit("preprocess", done=self.done, total=self.total, key=key, what=what)
        if self._bar is None:
            self._say(f"  [{self.done}/{self.total}] {key}: {what}")
            return
        if what.startswith("skipped"):
            self._bar.console.print(f"{key}: {what}")
        self._bar.update(self._task, completed=self.done, description=f"{key}: {what}")

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
