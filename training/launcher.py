"""Training as a separate process, for the bot (or any program).

    job = launch_training(config)          # returns at once; the child trains
    for event in job.events():             # new progress events since the last call
        print(event)                       # {"event": "step", "step": 12, "loss": ...}
    job.request_stop()                     # clean stop: checkpoint, then exit 0
    job.wait(timeout=600)

The child runs `python -m training.launcher CONFIG.json` with the config written
to `{output-dir}/job_config.json`; its console output goes to
`{output-dir}/console.log`. It trains exactly as `train.py --plain --yes`
would. A preprocess-only job (`preprocess=True` without `output_dir`) writes
these files beside its `--progress-file` instead, and ends with a
`preprocessed` event. A stop request creates the stop file; `terminate()` falls back to
SIGTERM (also a clean stop) and finally kills the process. The GPU is the
child's alone while it runs: the bot keeps the station off it (DESIGN.md).

Exit status of the child: 0 done or stopped, 1 run-time problem, 2 invalid
settings (see `{output-dir}/console.log` and the `error` event).

The child gets no secrets: its environment is the parent's without
`DISCORD_TOKEN` (engine.settings.without_secrets). The bot also hands it its
engine settings (`engine.settings.child_environment` in `env`), so the child
never reads `.env` and never sees a bot key. It also ends with its
parent: a trainer whose bot was killed would hold the GPU with nobody to
export its adapter. On Linux the kernel sends it SIGTERM when the parent dies
(`prctl(PR_SET_PDEATHSIG)`; strictly, when the parent *thread* that started
it ends: the bot starts it from a thread of asyncio's default executor, which
lives as long as the bot's event loop); everywhere a watchdog thread checks
the parent's pid every second and sends the same SIGTERM. SIGTERM is a clean
stop: the trainer saves what it learnt at the next step, so the restarted bot
can export it (bot.training.record).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.settings import PROJECT_ROOT, without_secrets
from training.config import ConfigError, TrainConfig
from training.progress import read_events

CONFIG_FILE = "job_config.json"
CONSOLE_FILE = "console.log"
PARENT_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
        """The job's folder: its console, config and (for training) its checkpoints."""
        return job_folder(self.config)

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


def job_folder(config: TrainConfig) -> Path:
    return Path(config.output_dir or config.progress_path.parent)


def launch_training(
    config: TrainConfig,
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> TrainingJob:
    """Check `config`, write it beside the output and start the training process.

    Raises `ConfigError` at once for invalid settings (nothing is started)."""
    only_preprocess = config.preprocess and config.output_dir is None
    config.check("preprocess" if only_preprocess else config.mode)  # type: ignore[arg-type]
    output = job_folder(config)
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
            [python, "-m", "training.launcher", str(config_path), "--parent-pid", str(os.getpid())],
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=without_secrets({**os.environ, **(env or {})}),
            start_new_session=True,
        )
    finally:
        console.close()
    return TrainingJob(process, config, _offset=offset)


def exit_with_parent(parent_pid: int, interval: float = PARENT_CHECK_SECONDS) -> bool:
    """Send this process SIGTERM when process `parent_pid` (its parent) ends.

    On Linux the kernel does it (`PR_SET_PDEATHSIG`); a daemon thread that polls
    the parent's pid does it everywhere. Returns whether the kernel took it on."""
    by_kernel = _set_parent_death_signal(signal.SIGTERM)
    watchdog = threading.Thread(target=_watch_parent, args=(parent_pid, interval), name="parent-watchdog", daemon=True)
    watchdog.start()
    return by_kernel


def _set_parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    """Polls until the parent is gone (this process is then adopted by another)."""
    while os.getppid() == parent_pid:
        time.sleep(interval)  # a timer: nothing to wait on for another process's end
    print(f"the parent process {parent_pid} is gone: stopping", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """The child: train from a config JSON file; with `--parent-pid N`, end with N."""
    from engine.logs import setup_logging
    from training.cli import run_config

    args = sys.argv[1:] if argv is None else argv
    if len(args) == 3 and args[1] == "--parent-pid" and args[2].isdigit():
        exit_with_parent(int(args[2]))
        args = args[:1]
    if len(args) != 1:
        print("usage: python -m training.launcher CONFIG.json [--parent-pid PID]", file=sys.stderr)
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
