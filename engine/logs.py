"""Logging set-up shared by every entry point, with secrets scrubbed from each line."""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "<redacted>"

#: Libraries that log import-time noise users cannot act on (torchao's optional CUDA
#: kernels, torch's pytree deprecations, bitsandbytes' optional CPU kernels).
NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "bitsandbytes")


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


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Log to stderr at `level`, scrubbing `secrets` from every record."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretScrubber(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet_third_party()


def quiet_third_party() -> None:
    """Silence import-time warnings and progress bars of the ML libraries.

    Call it before importing diffusers/peft. Our own modules log what matters
    (what was loaded, how long each stage took)."""
    import warnings

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message=".*weight_norm.*is deprecated", category=FutureWarning
    )
    warnings.filterwarnings("ignore", message=".*should be kept in float32.*")
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
