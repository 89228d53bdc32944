"""The bot's settings: the engine's plus the Discord and station keys, from the same
`.env` under the same names; the token never shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.settings import BotSettings, load_bot_settings
from engine.logs import REDACTED, SecretScrubber
from engine.settings import PROJECT_ROOT, SECRET_KEYS, Settings, SettingsError

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.secret-token-value-do-not-leak"


def test_bot_defaults_and_engine_keys_from_one_env_file(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text("BUFFER_SIZE=5\nOWNER_IDS=11, 22\nSHARD_COUNT=auto\nBATCH_SIZE=2\nDISCORD_TOKEN=\n")
    monkeypatch.setenv("BUFFER_SIZE", "3")
    s = load_bot_settings()
    assert isinstance(s, Settings)  # every engine function takes it
    assert (s.buffer_size, s.owner_ids, s.shard_count, s.batch_size) == (3, (11, 22), None, 2)
    assert s.discord_token is None and s.secrets == [] and s.dj_role == "DJ"
    assert s.local_output_dir == PROJECT_ROOT / "data" / "local-radio"


#: A wrong value of bot keys, and what the error line must say is allowed.
WRONG_BOT_VALUES = {
    "BUFFER_SIZE": ("-1", "an integer from 1 to 20"),
    "OWNER_IDS": ("bob", "Discord user ids separated by commas"),
    "SHARD_COUNT": ("0", "a number of shards from 1 to 1024"),
    "VOTE_SKIP_RATIO": ("0", "a share of listeners above 0"),
}


def test_wrong_bot_and_engine_values_give_one_line_each(env_file: Path) -> None:
    wrong = "".join(f"{key}={value}\n" for key, (value, _allowed) in WRONG_BOT_VALUES.items())
    env_file.write_text(wrong + "DEVICE=gpu\n")
    with pytest.raises(SettingsError) as info:
        load_bot_settings()
    lines = info.value.lines
    assert len(lines) == len(WRONG_BOT_VALUES) + 1 and any("DEVICE='gpu'" in line for line in lines)
    for key, (value, allowed) in WRONG_BOT_VALUES.items():
        assert any(f"{key}='{value}'" in line and allowed in line for line in lines), key


def test_every_secret_key_of_the_bot_is_kept_from_children() -> None:
    secret = [name.upper() for name, field in BotSettings.model_fields.items() if "SecretStr" in str(field.annotation)]
    assert secret and sorted(secret) == sorted(SECRET_KEYS)


def test_token_never_in_repr_str_dump_or_errors(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    s = load_bot_settings()
    assert s.discord_token.get_secret_value() == TOKEN
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        assert TOKEN not in text
    monkeypatch.setenv("BUFFER_SIZE", "-1")
    with pytest.raises(SettingsError) as info:
        load_bot_settings()
    assert TOKEN not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_token_that_fails_validation_is_not_echoed(env_file: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_bot_settings(discord_token=12345)
    assert "DISCORD_TOKEN=<hidden>" in str(info.value)
    assert "12345" not in str(info.value)


def test_logs_scrub_the_token_from_messages_arguments_and_tracebacks(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    s = load_bot_settings()
    logger = logging.getLogger("test.scrub")
    caplog.handler.addFilter(SecretScrubber(s.secrets))
    with caplog.at_level(logging.INFO, logger="test.scrub"):
        logger.info("login with %s", s.discord_token.get_secret_value())
        logger.info(f"inline {TOKEN}")
        try:
            raise RuntimeError(f"rejected token {TOKEN}")
        except RuntimeError:
            logger.exception("failed")
    assert TOKEN not in caplog.text
    assert caplog.text.count(REDACTED) >= 3
