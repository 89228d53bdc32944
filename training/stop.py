"""Clean stops: a stop file, SIGTERM, or Ctrl-C.

Training checks `StopRequest.requested` after every optimizer step; when set, it
saves a checkpoint at that step and ends (progress event `stopped`). The stop
file (default `{output-dir}/STOP`) works on every OS and from any process (the
bot creates it); SIGTERM and the first Ctrl-C do the same; a second Ctrl-C
aborts at once without saving. A stop file left from an earlier stop is
removed when training starts.

Ctrl-C reaches every process of the terminal's group, DataLoader workers
included, and they inherit this handler: only the process that installed it
acts (and says "Stop requested" once); the workers leave it to that process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class StopRequest:
    def __init__(self, stop_file: Path | None = None, *, handle_signals: bool = True):
        self.stop_file = stop_file
        self.reason: str | None = None
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()
        if stop_file is not None:
            stop_file.unlink(missing_ok=True)
        if handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        if os.getpid() != self._pid:  # a DataLoader worker (forked with this handler)
            return
        if signum == signal.SIGINT and self.reason == "Ctrl-C":
            raise KeyboardInterrupt
        self.reason = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        log.warning(
            "Stop requested (%s): saving a checkpoint after this step%s",
            self.reason,
            "; press Ctrl-C again to abort without saving" if signum == signal.SIGINT else "",
        )

    def request(self, reason: str) -> None:
        self.reason = reason

    @property
    def requested(self) -> bool:
        if self.reason is None and self.stop_file is not None and self.stop_file.exists():
            self.reason = f"stop file {self.stop_file}"
            log.warning("Stop requested (%s)", self.reason)
        return self.reason is not None

    def close(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
