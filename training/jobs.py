"""Training as a separate process, for the bot (or any program).

    job = launch_training(config)          # returns at once; the child trains
    for event in job.events():             # new progress events since the last call
        print(event)                       # {"event": "step", "step": 12, "loss": ...}
    job.request_stop()                     # clean stop: checkpoint, then exit 0
    job.wait(timeout=600)

The child runs `python -m training.jobs CONFIG.json` with the config written
to `{output-dir}/job_config.json`; its console output goes to
`{output-dir}/console.log`. It trains exactly as `train.py --plain --yes`
would. A stop request creates the stop file; `terminate()` falls back to
SIGTERM (also a clean stop) and finally kills the process. The GPU is the
child's alone while it runs: the bot keeps the station off it (DESIGN.md).

Exit status of the child: 0 done or stopped, 1 run-time problem, 2 invalid
settings (see `{output-dir}/console.log` and the `error` event).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.settings import PROJECT_ROOT
from training.config import ConfigError, TrainConfig
from training.progress import read_events

CONFIG_FILE = "job_config.json"
CONSOLE_FILE = "console.log"


@dataclass
class TrainingJob:
    process: subprocess.Popen
    config: TrainConfig
    _offset: int = 0
    _last: dict[str, Any] | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def adapter_dir(self) -> Path:
        """Where the engine-loadable adapter is once the job is done or stopped."""
        return self.output_dir / "final" / "adapter"

    def poll(self) -> int | None:
        """The exit status, or None while training."""
        return self.process.poll()

    def events(self) -> list[dict[str, Any]]:
        """Progress events written since the previous call (see training.progress)."""
        new, self._offset = read_events(self.config.progress_path, self._offset)
        if new:
            self._last = new[-1]
        return new

    @property
    def last_event(self) -> dict[str, Any] | None:
        return self._last

    def request_stop(self) -> None:
        """Ask for a clean stop: the child saves a checkpoint and exits."""
        self.config.stop_path.parent.mkdir(parents=True, exist_ok=True)
        self.config.stop_path.touch()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def terminate(self, grace: float = 120.0) -> int:
        """Stop file, then SIGTERM, then kill; returns the exit status."""
        self.request_stop()
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.terminate()
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def launch_training(
    config: TrainConfig,
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> TrainingJob:
    """Check `config`, write it beside the output and start the training process.

    Raises `ConfigError` at once for invalid settings (nothing is started)."""
    config.check(config.mode)  # type: ignore[arg-type]
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    config_path = output / CONFIG_FILE
    config_path.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    config.stop_path.unlink(missing_ok=True)
    # Events of earlier runs in the same folder are not this job's.
    progress = config.progress_path
    offset = progress.stat().st_size if progress.is_file() else 0
    console = open(output / CONSOLE_FILE, "ab")  # noqa: SIM115 (handed to the child)
    try:
        process = subprocess.Popen(
            [python, "-m", "training.jobs", str(config_path)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        console.close()
    return TrainingJob(process, config, _offset=offset)


def main(argv: list[str] | None = None) -> int:
    """The child: train from a config JSON file."""
    from engine.logs import setup_logging
    from training.cli import run_config

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.jobs CONFIG.json", file=sys.stderr)
        return 2
    setup_logging("INFO")
    try:
        config = TrainConfig.from_dict(json.loads(Path(args[0]).read_text()))
    except (OSError, ValueError) as exc:
        lines = exc.lines if isinstance(exc, ConfigError) else [str(exc)]
        for line in lines:
            print(f"error: {args[0]}: {line}", file=sys.stderr)
        return 2
    return run_config(config)


if __name__ == "__main__":
    sys.exit(main())
