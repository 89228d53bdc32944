"""`python -m bot.local`: the whole radio without Discord, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bot.local import main
from bot.settings import BotSettings
from engine.audio import probe
from engine.settings import ENV_FILE_VARIABLE, PROJECT_ROOT


def run_local(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m bot.local ARGS` as a user runs it, with only `env_file` for settings."""
    keys = set(BotSettings.model_fields)  # only the file speaks
    env = {key: value for key, value in os.environ.items() if key.lower() not in keys}
    return subprocess.run(
        [sys.executable, "-m", "bot.local", *args],
        cwd=PROJECT_ROOT,
        env={**env, ENV_FILE_VARIABLE: str(env_file)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_local_listener_plays_a_continuous_numbered_stream(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"CHECKPOINT_DIR={tiny_checkpoint_dir}\nDATA_DIR={tmp_path / 'data'}\n"
        f"TRACKS_DIR={tmp_path / 'tracks'}\nLOCAL_OUTPUT_DIR={tmp_path / 'out'}\n"
        "DEVICE=cpu\nDEFAULT_DURATION=10\nBUFFER_SIZE=2\n"
    )
    options = ["--songs", "3", "--speed", "20", "--songwriter", "template", "--steps", "2"]
    run = run_local(env_file, *options, "--request", "a cat on a piano")
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    plays = [json.loads(line) for line in (out / "plays.jsonl").read_text().splitlines()]
    assert len(plays) >= 3
    assert [p["number"] for p in plays] == list(range(1, len(plays) + 1))
    assert plays[0]["requester"] == "you"  # the request came first
    assert all(p["source"] == "fresh" for p in plays)
    for play in plays:
        info = probe(out / play["file"])
        assert info.codec == "opus" and abs(info.duration - 10) < 0.1
    # At 20x a track lasts 0.5 s, so the buffer may run dry: gap figures are for
    # bench/station.py; here each track after the first says how long the gap was.
    assert plays[0]["gap_ms"] is None and all(p["gap_ms"] >= 0 for p in plays[1:])
    playlist = (out / "playlist.m3u").read_text().splitlines()
    assert playlist[0] == "#EXTM3U" and playlist[2::2] == [p["file"] for p in plays]
    assert "> 0001 " in run.stdout and "on air" in run.stdout
    assert (tmp_path / "data" / "radio.sqlite3").is_file()


def test_bad_command_line_values_are_refused_before_anything_starts(capsys) -> None:
    assert main(["--songs", "-1"]) == 2
    assert "--songs must be 0 (no limit) or more" in capsys.readouterr().err
    assert main(["--speed", "0"]) == 2
    assert "--speed must be from 0.01 to 10000" in capsys.readouterr().err
    assert main(["--steps", "500"]) == 2
    assert "--steps must be from 1 to 200" in capsys.readouterr().err


def test_a_missing_checkpoint_ends_with_one_clear_line_and_the_traceback_in_the_log(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    log_file = tmp_path / "logs" / "radio.log"
    env_file.write_text(
        f"CHECKPOINT_DIR={tmp_path / 'nothing-here'}\nDATA_DIR={tmp_path / 'data'}\nDEVICE=cpu\nLOG_FILE={log_file}\n"
    )
    run = run_local(env_file, "--songs", "1", "--songwriter", "template")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "CHECKPOINT_DIR=" in errors[0], run.stderr
    worker_log = (tmp_path / "logs" / "radio-worker.log").read_text()
    assert "Traceback" in worker_log and "CheckpointError" in worker_log
