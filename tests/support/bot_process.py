"""`python -m tests.support.bot_process PORT`: the radio bot as its own process, for crash tests.

It runs as `python -m bot` does (settings from `RADIO_ENV_FILE`, the token
dropped from the environment, logging), pointed at a fake Discord on
127.0.0.1:PORT, with the test doubles a test process cannot reach from outside:
the fake voice connection, the template songwriter and quick training runs.
"""

from __future__ import annotations

import asyncio
import sys

import discord
import yarl

from bot.app import serve
from bot.settings import load_bot_settings
from engine.logs import setup_logging
from engine.settings import drop_secrets_from_environment
from tests.support.bot_world import make_bot
from tests.support.fake_voice import VoiceLog
from tests.support.train_helpers import CHILD_ENV


def main(port: int) -> int:
    settings = load_bot_settings()
    drop_secrets_from_environment()
    setup_logging(settings.log_level, settings.secrets, settings.log_file)
    discord.http.Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/gateway")
    training = {"overrides": {"cache_dir": settings.data_dir / "cache"}, "env": CHILD_ENV, "poll_seconds": 0.2}
    bot = make_bot(settings, VoiceLog(), training)
    assert settings.discord_token is not None
    return asyncio.run(serve(bot, settings.discord_token.get_secret_value()))


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
