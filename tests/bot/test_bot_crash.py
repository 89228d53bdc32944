"""The bot killed with SIGKILL in the middle of a training run, then started again.

The first bot is its own process (`tests.support.bot_process`, run as `python -m bot`
runs), against the fake Discord of this test. Its trainer must not outlive it
holding the GPU: it ends with its parent, saving what it learnt. The next
start finds the run's record, makes sure no trainer is left, exports the
adapter, tells the server, and only then starts the music worker. Neither
child process ever sees the bot's token.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.app import serve
from bot.settings import BotSettings
from bot.training.record import read_record, record_path, trainer_alive
from engine.settings import ENV_FILE_VARIABLE, INHERITED_SETTINGS_VARIABLE, PROJECT_ROOT, Settings
from tests.support.bot_world import add_server, make_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog
from tests.support.train_helpers import CHILD_ENV, fast_config, make_audio_dir

ADAPTER = "tonal"


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def trainers(run_folder: Path) -> list[int]:
    """Live `training.launcher` processes of this run."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"training.launcher" in words and any(str(run_folder).encode() in w for w in words):
            found.append(int(cmdline.parent.name))
    return found


def env_file(settings: BotSettings, path: Path, token: str) -> Path:
    keys = (
        "checkpoint_dir",
        "data_dir",
        "tracks_dir",
        "models_dir",
        "adapters_dir",
        "datasets_dir",
        "device",
        "default_duration",
        "buffer_size",
        "idle_disconnect_seconds",
        "max_length_max",
        "log_file",
    )
    lines = [f"{key.upper()}={getattr(settings, key)}" for key in keys]
    path.write_text("\n".join([*lines, f"DISCORD_TOKEN={token}"]) + "\n")
    return path


async def test_a_bot_killed_mid_training_leaves_no_trainer_and_the_next_start_exports(
    tmp_path: Path, tiny_checkpoint_dir: Path
) -> None:
    from training.presets import save_preset

    async with FakeDiscord() as fake:
        server = add_server(fake, "server")
        settings = world_settings(tmp_path, tiny_checkpoint_dir, fake.token)
        make_audio_dir(settings.datasets_dir / "tones", ["synth.wav", "pad.flac"], broken=False)
        tiny = fast_config(tiny_checkpoint_dir, tmp_path, epochs=2)
        save_preset("tiny", tiny, settings.data_dir / "training-presets", "tests: tiny model")
        keys = {name.upper() for name in BotSettings.model_fields}
        env = {k: v for k, v in os.environ.items() if k.upper() not in keys}
        env.update(
            {
                ENV_FILE_VARIABLE: str(env_file(settings, tmp_path / "bot.env", fake.token)),
                "DISCORD_TOKEN": fake.token,
                **CHILD_ENV,
            }
        )
        with open(tmp_path / "first-bot.log", "wb") as log:
            first = subprocess.Popen(
                [sys.executable, "-m", "tests.support.bot_process", str(fake.port)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            await fake.wait_for(lambda: fake.command_syncs, timeout=180)
            # Neither the worker nor any other child of the bot got the token.
            spawned = children(first.pid)
            assert spawned, "the music worker runs"
            for pid in spawned:
                assert fake.token not in str(environment(pid)), pid

            await fake.wait_for(lambda: fake.sessions and fake.identifies == 1, timeout=60)
            owner = server.guild.owner
            interaction = await fake.invoke(
                server.guild,
                owner,
                "radio_train",
                server.text,
                dataset="tones",
                name=ADAPTER,
                preset="tiny",
                epochs=500,
            )
            assert "Training started" in (await fake.answer(interaction, 60)).content

            def training_steps() -> bool:
                return any("Step " in m.content for m in fake.channel_messages.get(server.text.id, []))

            await fake.wait_for(training_steps, timeout=240)
            record = read_record(settings.data_dir)
            assert record is not None and trainer_alive(record)
            trainer_environment = environment(record.pid)
            assert fake.token not in str(trainer_environment)
            # Its settings are the bot's engine keys, handed over: it reads no `.env`, no bot key.
            handed = json.loads(trainer_environment[INHERITED_SETTINGS_VARIABLE])
            assert set(handed) == set(Settings.model_fields)
            first.kill()  # SIGKILL: nothing of the bot runs on
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()

        second = make_bot(settings, VoiceLog(), {"poll_seconds": 0.2, "env": CHILD_ENV})
        running = asyncio.create_task(serve(second, fake.token))
        await fake.wait_for(lambda: second.is_ready(), timeout=300)
        # The orphan is gone, its run recorded no more; the worker runs, alone.
        assert not trainer_alive(record) and trainers(record.folder) == []
        assert not record_path(settings.data_dir).exists()
        client = second.stations.client
        assert client.state == "ready" and client.pid is not None
        os.kill(client.pid, 0)
        # What it had learnt is this server's adapter now, and the server is told.
        assert (settings.adapters_dir / f"g{server.id}-{ADAPTER}").is_dir()

        def told() -> list:
            return [
                m.content
                for m in fake.channel_messages.get(server.text.id, [])
                if "the bot restarted while it trained" in m.content
            ]

        (notice,) = await fake.wait_for(told, timeout=30)
        assert "what it had learnt by step" in notice and f"name:{ADAPTER}" in notice
        os.kill(os.getpid(), signal.SIGTERM)
        assert await running == 0
