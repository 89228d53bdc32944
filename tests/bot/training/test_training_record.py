"""The training run's record, old run folders and export names (bot.training.record,
bot.training.files): the pieces crash recovery and cleanup stand on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bot.training.files import free_key
from bot.training.record import (
    KEPT_FAILED_RUNS,
    RunRecord,
    clear_record,
    prune_run_folders,
    read_record,
    record_path,
    trainer_alive,
    write_record,
)


def record(data_dir: Path, pid: int, folder: Path | None = None) -> RunRecord:
    folder = folder or data_dir / "training-runs" / "g1-x-20261130"
    return RunRecord(pid, 1, 2, "x", "g1-x", "tones", str(folder), time.time())


def test_a_record_round_trips_and_one_pointing_outside_the_runs_folder_is_dropped(
    tmp_path: Path,
) -> None:
    written = record(tmp_path, 123)
    write_record(tmp_path, written)
    assert read_record(tmp_path) == written
    clear_record(tmp_path)
    assert read_record(tmp_path) is None
    write_record(tmp_path, record(tmp_path, 123, folder=Path("/etc")))
    assert read_record(tmp_path) is None and not record_path(tmp_path).exists()
    record_path(tmp_path).write_text("{not json")
    assert read_record(tmp_path) is None and not record_path(tmp_path).exists()


def test_only_a_live_training_process_of_this_run_counts_as_its_trainer(tmp_path: Path) -> None:
    folder = tmp_path / "training-runs" / "g1-x-1"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not trainer_alive(record(tmp_path, other.pid, folder))  # not training.launcher
    finally:
        other.kill()
        other.wait()
    assert not trainer_alive(record(tmp_path, other.pid, folder))  # gone
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "training.launcher", str(folder / "job_config.json")]
    )
    try:
        deadline = time.monotonic() + 30
        while not trainer_alive(record(tmp_path, fake.pid, folder)):  # until it has exec'd
            assert time.monotonic() < deadline, "a training process was not recognised"
            time.sleep(0.05)
    finally:
        fake.kill()
        fake.wait()


def test_old_run_folders_go_but_the_newest_failed_ones_and_the_current_stay(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "training-runs"
    folders = []
    for index in range(KEPT_FAILED_RUNS + 3):
        folder = runs / f"g1-run-{index}"
        folder.mkdir(parents=True)
        os.utime(folder, (1000 + index, 1000 + index))
        folders.append(folder)
    current = folders[0]  # the oldest, but a run is going in it
    removed = prune_run_folders(tmp_path, keep=current)
    assert sorted(removed) == sorted(folders[1:3])
    assert sorted(runs.iterdir()) == sorted([current, *folders[3:]])


def test_an_adapter_in_use_gets_the_next_free_name(tmp_path: Path) -> None:
    (tmp_path / "g1-x-2").mkdir()
    in_use = {"g1-x", "g1-x-3"}.__contains__
    assert free_key(tmp_path, "g1-y", in_use) == "g1-y"
    assert free_key(tmp_path, "g1-x", in_use) == "g1-x-4"
