"""End to end: the bot's owner trains an adapter from Discord and the station sings with it.

The real discord.py client against the fake Discord, the real worker (tiny
checkpoint) and the real trainer in its own process, on a tiny dataset of
tones with a tiny trainer preset saved the way the wizard saves one. While it
trains the worker is stopped (the GPU is the trainer's) and the station
replays its library and says so; afterwards generation resumes, the adapter
is in ADAPTERS_DIR and a DJ applies it with /radio_adapter.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from bot.store import TrackRecord
from engine.worker.protocol import SongJob
from tests.bot_world import Server, World, add_server, start_bot, world_settings
from tests.fake_discord import FakeDiscord, FakeMessage
from tests.fake_voice import VoiceLog
from tests.radio_helpers import TEST_STEPS
from tests.train_helpers import CHILD_ENV, fast_config, make_audio_dir

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADAPTER = "tonal"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    from training.presets import save_preset

    root = tmp_path_factory.mktemp("bot-training")
    async with FakeDiscord() as fake:
        server = add_server(fake, "trainers")
        settings = world_settings(root, tiny_checkpoint_dir, fake.token)
        make_audio_dir(settings.datasets_dir / "tones", ["synth.wav", "pad.flac"], broken=False)
        # A tiny-model preset; a high learning rate so that a few steps change the sound.
        tiny = fast_config(tiny_checkpoint_dir, root, lr=0.05, epochs=2)
        save_preset("tiny", tiny, settings.data_dir / "training-presets", "tests: tiny model")
        training = {"overrides": {"cache_dir": root / "cache"}, "env": CHILD_ENV,
                    "poll_seconds": 0.2}  # fmt: skip
        voice = VoiceLog()
        async with start_bot(fake, settings, voice, training) as bot:
            yield World(fake, bot, voice, settings, [server])


def decoded(path: Path) -> np.ndarray:
    """The track as float32 samples, decoded by ffmpeg as a listener would hear it."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", "48000", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(raw, dtype=np.float32)


async def made_tracks(world: World, server: Server) -> list[TrackRecord]:
    """Every track the station made, oldest first."""
    store = world.bot.stations.store
    plays = await asyncio.to_thread(store.history, server.id, 100)
    buffered = await asyncio.to_thread(store.buffered_tracks, server.id)
    found = {play.track.id: play.track for play in plays}
    found.update({track.id: track for track in buffered})
    return [found[key] for key in sorted(found)]


def progress_message(world: World, server: Server) -> FakeMessage | None:
    messages = world.fake.channel_messages.get(server.text.id, [])
    return next((m for m in messages if f"Adapter **{ADAPTER}**" in m.content), None)


async def refused(world: World, server: Server, user, command: str, **options) -> str:
    _, message = await world.run(server, user, command, **options)
    assert message.ephemeral and message.content.startswith("⚠️"), message.text
    return message.content


async def test_train_from_discord_then_sing_with_the_adapter(world: World) -> None:
    server = world.servers[0]
    await server.guild.set_voice(server.alice, server.lounge)
    await server.guild.set_voice(server.admin, server.lounge)
    _, message = await world.run(server, server.admin, "radio_join")
    assert "On air" in message.content
    station = world.bot.radio.known_station(server.id)
    assert station is not None
    await world.fake.wait_for(
        lambda: [p for p in world.voice.plays_in(server.id) if p.ended], timeout=120
    )  # fmt: skip (a library to replay)

    # What the owner is offered, and what is refused before anything starts.
    owner = server.guild.owner
    datasets = await world.fake.autocomplete(server.guild, owner, "radio_train",
                                             "dataset", dataset="", name=ADAPTER)  # fmt: skip
    assert [c["value"] for c in datasets] == ["tones"]
    presets = await world.fake.autocomplete(server.guild, owner, "radio_train", "preset",
                                            dataset="tones", name=ADAPTER, preset="")  # fmt: skip
    assert {"minimal", "tiny"} <= {c["value"] for c in presets}
    text = await refused(world, server, server.admin, "radio_train", dataset="tones", name=ADAPTER)
    assert "for the bot's owner" in text and "TRAINING_GUILDS" in text
    text = await refused(world, server, owner, "radio_train", dataset="../..", name="x")
    assert "invalid dataset '../..'" in text and "tones" in text
    text = await refused(world, server, owner, "radio_train", dataset="nope", name="x")
    assert "DATASETS_DIR" in text and str(world.settings.datasets_dir) not in text
    text = await refused(world, server, owner, "radio_train", dataset="tones", name="../x")
    assert "invalid adapter '../x'" in text and "letters, digits" in text
    text = await refused(world, server, owner, "radio_train", dataset="tones",
                         name=ADAPTER, epochs=0)  # fmt: skip
    assert "invalid epochs 0" in text and "1 to 1000" in text
    text = await refused(world, server, owner, "radio_train", dataset="tones",
                         name=ADAPTER, preset="huge")  # fmt: skip
    assert "invalid preset 'huge'" in text and "tiny" in text
    assert not world.bot.training.running and world.bot.stations.busy_reason is None

    # Training: the worker stops, the station replays its library and says why.
    _, message = await world.run(server, owner, "radio_train", dataset="tones",
                                 name=ADAPTER, preset="tiny", epochs=2)  # fmt: skip
    assert "Training started" in message.content
    assert world.bot.training.running
    assert "an adapter is training" in (world.bot.stations.busy_reason or "")
    text = await refused(world, server, owner, "radio_train", dataset="tones", name="b")
    assert "'tonal' is training now" in text
    _, queue = await world.run(server, server.alice, "radio_queue")
    assert "an adapter is training" in queue.text and "replaying the library" in queue.text
    _, status = await world.run(server, owner, "radio_train_status")
    assert status.ephemeral and "Adapter **tonal**" in status.content

    async def replayed() -> bool:
        history = await asyncio.to_thread(station.store.history, server.id, 100)
        return any(play.source == "replay" for play in history)

    await world.fake.wait_for(replayed, timeout=120)

    # The run ends; the adapter is exported and generation resumes.
    final = await world.fake.wait_for(
        lambda: (m := progress_message(world, server)) and "✅" in m.content and m, timeout=240
    )
    assert "training finished" in final.content
    assert re.search(r"Step (\d+)/\1, epoch 2/2", final.content), final.content
    assert "loss" in final.content and final.edits >= 2
    assert "/radio_adapter name:tonal" in final.content
    assert (await world.bot.training.wait()).state == "done"  # type: ignore[union-attr]
    assert not world.bot.training.running and world.bot.stations.busy_reason is None
    adapter_dir = world.settings.adapters_dir / f"g{server.id}-{ADAPTER}"  # this server's
    assert (adapter_dir / "pytorch_lora_weights.safetensors").is_file()
    # The run's folder (tensors, checkpoints) and its record are gone once exported.
    assert list((world.settings.data_dir / "training-runs").iterdir()) == []
    assert not (world.settings.data_dir / "training-run.json").exists()
    _, listing = await world.run(server, server.dj, "radio_adapters")
    assert "**tonal** (lora, this server's)" in listing.content
    assert "base model" in listing.content

    # A DJ applies it; the next request is sung with it, and sounds different.
    names = await world.fake.autocomplete(server.guild, server.dj, "radio_adapter", "name",
                                          name="")  # fmt: skip
    assert [c["value"] for c in names] == ["off", ADAPTER]
    text = await refused(world, server, server.dj, "radio_adapter", name=ADAPTER, scale=9)
    assert "scale 9 is not allowed" in text and "0 to 4" in text
    text = await refused(world, server, server.dj, "radio_adapter", name="nope")
    assert "invalid adapter 'nope'" in text and "tonal" in text
    _, message = await world.run(server, server.dj, "radio_adapter", name=ADAPTER, scale=4)
    assert "adapter **tonal** at scale 4" in message.content
    _, listing = await world.run(server, server.dj, "radio_adapters")
    assert "**tonal** (lora, this server's) ← active (scale 4)" in listing.content
    _, message = await world.run(server, server.alice, "radio_request", theme="a tonal song")
    track = await world.fake.wait_for(lambda: _requested(world, server), timeout=120)
    assert track.track.settings["adapter"] == f"g{server.id}-{ADAPTER}"
    assert track.track.settings["adapter_scale"] == 4.0

    def now_playing_with_adapter() -> list[FakeMessage]:
        messages = world.fake.channel_messages.get(server.text.id, []) + world.fake.deleted_messages
        return [m for m in messages if "Now playing" in m.text and "adapter tonal ×4" in m.text]

    await world.fake.wait_for(now_playing_with_adapter, timeout=120)
    with_adapter = decoded(track.path)  # before the same song is made again (same file name)
    base = await world.bot.stations.client.submit(
        SongJob(job_id="same-seed-base", spec=track.spec, steps=TEST_STEPS)
    )
    assert base.track.seed == track.track.seed and base.track.settings["adapter"] is None
    without = decoded(Path(base.track.path))
    assert with_adapter.shape == without.shape
    # The same song decodes bit for bit the same (opus is deterministic); the tiny random
    # VAE mutes what the adapter changes, so "audible" is a margin above that, not loudness.
    assert np.sqrt(np.mean((with_adapter - without) ** 2)) > 1e-4


async def _requested(world: World, server: Server) -> TrackRecord | None:
    return next((t for t in await made_tracks(world, server) if t.requester_id), None)


async def test_a_broken_adapter_fails_its_job_and_the_station_carries_on(world: World) -> None:
    server = world.servers[0]
    station = world.bot.radio.known_station(server.id)
    assert station is not None and station.playing
    broken = world.settings.adapters_dir / "broken"
    broken.mkdir()
    (broken / "weights.safetensors").write_bytes(b"not a safetensors file at all")
    _, message = await world.run(server, server.dj, "radio_adapter", name="broken")
    assert "adapter **broken**" in message.content
    _, message = await world.run(server, server.alice, "radio_request", theme="after the break")

    async def recovered() -> bool:
        status = await station.status()
        return status.settings.adapter is None and any(
            "adapter was switched off" in note for note in status.notes
        )

    await world.fake.wait_for(recovered, timeout=120)
    status = await station.status()
    note = next(n for n in status.notes if "switched off" in n)
    assert "adapter 'broken'" in note and "not a readable safetensors file" in note
    stats = await asyncio.to_thread(station.store.stats, server.id)
    assert "adapter_error" in str(stats)
    # The station goes on making songs, with the base model.
    last = (await made_tracks(world, server))[-1].id
    await world.fake.wait_for(lambda: _base_track_after(world, server, last), timeout=120)
    _, message = await world.run(server, server.dj, "radio_adapter", name="off")
    assert "base model" in message.content


async def _base_track_after(world: World, server: Server, last: int) -> TrackRecord | None:
    found = await made_tracks(world, server)
    return next((t for t in found if t.id > last and t.track.settings["adapter"] is None), None)
