"""`python -m bot` as its users meet it: a missing or refused token, command sync to
the development server, a clean shutdown on SIGTERM and a restart that picks up
where it stopped. Real discord.py against the fake Discord, the real worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import run, serve
from bot.store import Store
from engine.settings import PROJECT_ROOT
from tests.support.bot_world import add_server, make_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog


def test_without_a_token_python_m_bot_says_how_to_set_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# no token here\n")
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env["RADIO_ENV_FILE"] = str(env_file)
    out = subprocess.run([sys.executable, "-m", "bot"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "DISCORD_TOKEN is not set" in out.stderr and "python -m bot.local" in out.stderr


async def test_a_refused_token_ends_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeDiscord() as fake:
        add_server(fake, "server")
        settings = world_settings(tmp_path, tmp_path / "checkpoint", "not-the-token")
        assert await run(settings) == 1
        assert fake.identifies == 0 and not fake.command_syncs
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "Discord refused DISCORD_TOKEN" in err and "docs/discord-setup.md" in err


async def test_sigterm_shuts_down_cleanly_and_a_restart_plays_on(tmp_path: Path, tiny_checkpoint_dir: Path) -> None:
    async with FakeDiscord() as fake:
        server = add_server(fake, "server")
        settings = world_settings(tmp_path, tiny_checkpoint_dir, fake.token, dev_guild_id=server.id)
        voice = VoiceLog()

        first = make_bot(settings, voice)
        running = asyncio.create_task(serve(first, fake.token))
        # Commands go to the development server only, where they show at once.
        await fake.wait_for(lambda: fake.command_syncs, timeout=120)
        assert [guild for guild, _ in fake.command_syncs] == [server.id]
        await server.guild.set_voice(server.alice, server.lounge)
        await fake.wait_for(lambda: first.is_ready())
        interaction = await fake.invoke(server.guild, server.alice, "radio_join")
        assert "On air" in (await fake.answer(interaction)).content
        await fake.wait_for(lambda: voice.plays and voice.plays[-1].frames > 10, timeout=120)
        worker = first.stations.client.pid
        assert worker is not None

        os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or systemd sends
        assert await running == 0
        assert first.is_closed()
        await fake.wait_for(lambda: fake.bot.id not in server.guild.voice_states)
        with pytest.raises(ProcessLookupError):
            os.kill(worker, 0)  # the worker stopped (and was reaped)
        with Store.from_settings(settings) as store:  # the database was closed cleanly
            assert store.guild_settings(server.id).voice_channel_id == server.lounge.id
            interrupted = store.history(server.id, 1)[0]
            assert interrupted.ended_at is None  # it plays again after the restart

        # The restart goes back on air where alice still listens, with that track.
        second = make_bot(settings, voice)
        before = len(voice.plays)
        running = asyncio.create_task(serve(second, fake.token))
        resumed = await fake.wait_for(lambda: [p for p in voice.plays[before:] if p.frames], timeout=120)
        assert fake.identifies == 2
        assert resumed[0].channel_id == server.lounge.id
        plays = await asyncio.to_thread(second.stations.store.history, server.id, 10)
        assert interrupted.track.id in [p.track.id for p in plays if p.id > interrupted.id]
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        assert await running == 0


async def test_without_a_working_worker_the_bot_runs_and_says_why(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        server = add_server(fake, "server")
        settings = world_settings(tmp_path, tmp_path / "no-checkpoint-here", fake.token)
        bot = make_bot(settings, VoiceLog())
        running = asyncio.create_task(serve(bot, fake.token))
        await fake.wait_for(lambda: bot.is_ready(), timeout=120)
        await server.guild.set_voice(server.alice, server.lounge)
        interaction = await fake.invoke(server.guild, server.alice, "radio_join")
        assert "On air" in (await fake.answer(interaction)).content
        interaction = await fake.invoke(server.guild, server.alice, "radio_nowplaying")
        text = (await fake.answer(interaction)).text
        assert "no new songs right now (the music worker is unavailable" in text
        assert "no-checkpoint-here" in text
        os.kill(os.getpid(), signal.SIGTERM)
        assert await running == 0
