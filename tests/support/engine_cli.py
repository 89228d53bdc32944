"""Run `python -m engine ...` in a subprocess, as a user would, with a chosen .env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.settings import PROJECT_ROOT, Settings

#: Settings keys are cleared from the child's environment so only `env_file` and
#: the test's own overrides count, as in the `env_file` fixture.
_SETTINGS_KEYS = {name.upper() for name in Settings.model_fields}


def run_engine(args: list[str], env_file: Path | str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k.upper() not in _SETTINGS_KEYS}
    full.update(env, RADIO_ENV_FILE=str(env_file))
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=PROJECT_ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
