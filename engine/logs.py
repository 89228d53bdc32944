"""Logging set-up shared by every entry point, with secrets scrubbed from each line.

The console (stderr) shows records at `LOG_LEVEL`. With a log file (`LOG_FILE`),
the project's own loggers also write everything down to DEBUG there, so an
expected error shows as one line on the console while its traceback, logged at
debug level, stays in the file.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path

REDACTED = "<redacted>"

#: The project's own loggers: these write DEBUG records to the log file.
OWN_LOGGERS = ("bot", "engine", "training")
LOG_FILE_BYTES = 10 * 2**20
LOG_FILE_BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Libraries that log import-time noise users cannot act on (torchao's optional CUDA
#: kernels, torch's pytree deprecations, bitsandbytes' optional CPU kernels).
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "bitsandbytes")
#: LyCORIS logs every network it builds at INFO to stdout, and sets that level
#: itself when imported: a filter on its logger outlives the import.
LYCORIS_LOGGER = "LyCORIS"


class ConsoleHandler(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is when the record comes. A live Rich
    progress bar swaps `sys.stderr` for a proxy that prints above the bar; a handler
    holding the original stream would write through the bar instead."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class SecretScrubber(logging.Filter):
    """Replaces each known secret (the Discord token) in a record's final text.

    The message is rendered first, so a secret passed as an argument, inside an
    exception, or in a traceback is caught too.
    """

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self._scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        return True


def setup_logging(level: str = "INFO", secrets: Iterable[str] = (), log_file: Path | None = None) -> None:
    """Log to stderr at `level` and, with `log_file`, everything of our own loggers
    down to DEBUG into that file (rotated at 10 MB, 3 old files kept); `secrets` are
    scrubbed from every record. A log file that cannot be opened is skipped with
    one line on stderr."""
    scrubber = SecretScrubber(secrets)
    console = ConsoleHandler()
    console.setLevel(level)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.RotatingFileHandler(
                    log_file,
                    maxBytes=LOG_FILE_BYTES,
                    backupCount=LOG_FILE_BACKUPS,
                    encoding="utf-8",
                    delay=True,
                )
            )
        except OSError as exc:
            log_file = None
            console.handle(
                logging.makeLogRecord(
                    {"levelno": logging.WARNING, "levelname": "WARNING", "name": __name__, "msg": f"no log file: {exc}"}
                )
            )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(scrubber)
        root.addHandler(handler)
    root.setLevel(level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if log_file is not None else logging.NOTSET)
    quiet_third_party()


def quiet_third_party() -> None:
    """Silence import-time warnings and progress bars of the ML libraries.

    Call it before importing diffusers/peft. Our own modules log what matters
    (what was loaded, how long each stage took)."""
    import warnings

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    lycoris = logging.getLogger(LYCORIS_LOGGER)
    if not any(isinstance(f, _WarningsOnly) for f in lycoris.filters):
        lycoris.addFilter(_WarningsOnly())
    # diffusers re-enables huggingface_hub's progress bars after loading, which warns
    # on every run that the variable below wins.
    warnings.filterwarnings("ignore", message="Cannot enable progress bars")
    warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*should be kept in float32.*")
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
