"""Training as the bot runs it: a separate process with a progress stream and a
clean stop; SIGTERM stops as cleanly; problems arrive as events and statuses."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.train_helpers import (
    CHILD_ENV,
    fast_config,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.config import ConfigError
from training.launcher import launch_training
from training.loop import train
from training.progress import read_events


def wait_for(job, event: str, timeout: float = 240.0) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += job.events()
        if any(e["event"] == event for e in seen):
            return seen
        if job.poll() is not None:
            break
        time.sleep(0.2)
    seen += job.events()
    log = (job.output_dir / "console.log").read_text()
    raise AssertionError(f"no {event!r} event; got {[e['event'] for e in seen]}\n{log[-2000:]}")


def test_a_launched_job_streams_progress_and_stops_cleanly(dataset, tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    config = fast_config(
        tiny_checkpoint_dir,
        tmp_path,
        dataset_dir=dataset[1],
        output_dir=tmp_path / "out",
        epochs=100_000,
        log_every=100,
    )
    config.output_dir.mkdir()
    config.progress_path.write_text('{"event": "done", "time": 0}\n')  # an earlier run's
    job = launch_training(config, env=CHILD_ENV)
    events = wait_for(job, "step")
    assert events[0]["event"] == "start" and events[0]["total_steps"] == 400_000
    step = next(e for e in events if e["event"] == "step")
    assert {"step", "epoch", "loss", "lr", "eta_s"} <= step.keys()
    job.request_stop()
    assert job.wait(timeout=240) == 0
    events += job.events()
    last = events[-1]
    assert last["event"] == "stopped" and "stop file" in last["reason"]
    assert Path(last["adapter"]) == job.adapter_dir
    assert (job.adapter_dir / "pytorch_lora_weights.safetensors").is_file()
    assert (job.output_dir / "final" / "training_state.pt").is_file()
    assert job.last_event == last


def test_bad_settings_are_refused_before_anything_starts(tmp_path: Path) -> None:
    config = fast_config(tmp_path / "nope", tmp_path, dataset_dir=tmp_path, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="--checkpoint-dir"):
        launch_training(config)
    assert not (tmp_path / "job_config.json").exists()


def test_a_failing_job_reports_an_error_event_and_status_1(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    config = fast_config(tiny_checkpoint_dir, tmp_path, dataset_dir=empty, output_dir=tmp_path / "out")
    job = launch_training(config, env=CHILD_ENV)
    assert job.wait(timeout=240) == 1
    (error,) = [e for e in job.events() if e["event"] == "error"]
    assert "manifest.json" in error["message"]
    assert "not a preprocessed dataset" in (job.output_dir / "console.log").read_text()


def test_sigterm_stops_after_the_step_and_saves(dataset, tiny_checkpoint_dir, tmp_path) -> None:
    config = fast_config(
        tiny_checkpoint_dir,
        tmp_path,
        dataset_dir=dataset[1],
        output_dir=tmp_path / "out",
        epochs=50,
    )

    def terminate_at_two(event: dict) -> None:
        if event["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    result = train(config, plain=True, on_step=terminate_at_two)
    assert (result.stopped, result.reason, result.step) == (True, "SIGTERM", 2)
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    events, _ = read_events(config.progress_path)
    assert events[-1]["event"] == "stopped" and events[-1]["step"] == 2
