"""The token stays with the bot: not in `.env` for others to read, not in a child's
settings or environment, not in anything posted to Discord. (The child processes'
real environments are checked in test_bot_crash.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from bot.settings import BotSettings, load_bot_settings
from bot.training.files import console_tail
from engine.settings import (
    PROJECT_ROOT,
    Settings,
    SettingsError,
    drop_secrets_from_environment,
    load_settings,
    without_secrets,
)
from engine.worker.process import WorkerConfig, worker_settings

TOKEN = "MTIz.secret-token.for-this-test"


def test_setup_writes_env_readable_by_its_owner_only(tmp_path: Path) -> None:
    script = (PROJECT_ROOT / "setup.sh").read_text()
    block = re.search(r"^if \[ ! -f \.env \]; then\n.*?^fi$", script, flags=re.M | re.S)
    assert block is not None, "setup.sh no longer creates .env in one block"
    shutil.copy(PROJECT_ROOT / ".env.example", tmp_path / ".env.example")
    subprocess.run(
        [
            "bash",
            "-c",
            f'say() {{ :; }}\nrun() {{ "$@"; }}\nDRY_RUN=0\numask 022\n{block.group(0)}',
        ],
        cwd=tmp_path,
        check=True,
    )
    mode = stat.S_IMODE((tmp_path / ".env").stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_the_worker_never_reads_the_token_from_env_or_environment(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\nBUFFER_SIZE=3\nBATCH_SIZE=2\n")
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    settings = load_bot_settings()
    assert settings.discord_token is not None  # the bot itself has it
    config = WorkerConfig.from_settings(settings)
    assert TOKEN not in config.model_dump_json()
    inside = worker_settings(config)
    assert type(inside) is Settings and inside.batch_size == 2
    assert TOKEN not in repr(inside) and inside.secrets == []


def test_the_worker_config_holds_the_engine_keys_and_no_bot_key(env_file: Path) -> None:
    env_file.write_text("DJ_ROLE=Mods\nOWNER_IDS=7\nLOCAL_OUTPUT_DIR=/srv/out\nBUFFER_SIZE=4\n")
    settings = load_bot_settings(discord_token=TOKEN)
    sent = json.loads(WorkerConfig.from_settings(settings).model_dump_json())["settings"]
    assert set(sent) == set(Settings.model_fields)
    bot_only = set(BotSettings.model_fields) - set(Settings.model_fields)
    assert {"discord_token", "dj_role", "owner_ids", "buffer_size", "local_output_dir"} <= bot_only
    assert not bot_only & set(sent)
    assert not {"Mods", "/srv/out", TOKEN} & {str(value) for value in sent.values()}


def test_the_worker_builds_its_settings_without_reading_env(env_file: Path) -> None:
    """The worker gets its parent's values; a `.env` that changed since (or a broken
    one, or one with the token) is never read."""
    config = WorkerConfig.from_settings(load_bot_settings(env_file, batch_size=3))
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\nDEVICE=gpu\nLLM_MODEL_NAME=other.gguf\n")
    with pytest.raises(SettingsError):  # the file is broken for anyone who reads it
        load_settings()
    inside = worker_settings(config)
    assert inside.batch_size == 3 and inside.device == "auto" and inside.llm_model_name == "auto"
    assert inside.secrets == [] and not hasattr(inside, "discord_token")


def test_children_get_an_environment_without_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert without_secrets({"discord_token": TOKEN, "PATH": "/bin"}) == {"PATH": "/bin"}
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setenv("Discord_Token", TOKEN)
    drop_secrets_from_environment()
    assert TOKEN not in os.environ.values()


def test_the_trainer_console_posted_on_failure_shows_no_token_or_path(env_file: Path, tmp_path: Path) -> None:
    env_file.write_text(f"DISCORD_TOKEN={TOKEN}\n")
    run = tmp_path / "srv" / "radio" / "run"
    run.mkdir(parents=True)
    (run / "console.log").write_text(
        f'Traceback (most recent call last):\n  File "{run}/x.py", line 3\n'
        f"RuntimeError: token {TOKEN} rejected at {run}/final\n"
    )
    tail = console_tail(run, load_bot_settings().secrets)
    assert "RuntimeError" in tail and "…/final" in tail
    assert TOKEN not in tail and str(tmp_path) not in tail
