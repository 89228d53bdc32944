"""End to end: the bot's owner trains a station's sound from Discord alone.

The real discord.py client against the fake Discord, the real worker (tiny
checkpoint) and the real trainer in its own process. The owner makes a dataset
from three attachments (one corrupt: reported, the others kept), starts a run
and queues a second one; the progress message is edited with the loss curve
as a PNG; before/after clips are posted; the second run starts when the first
ends (and is stopped); a DJ puts the adapter on air with the button, and the
next song is sung with it. The runs are still known to /radio_train_status.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from bot.store import TrackRecord
from engine.worker.protocol import SongJob
from tests.support.bot_world import Server, World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord, FakeMessage
from tests.support.fake_voice import VoiceLog
from tests.support.radio_helpers import TEST_STEPS
from tests.support.train_helpers import BROKEN, CHILD_ENV, CLIP_SECONDS, fast_config, write_audio

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADAPTER = "tonal"
HOST_PATH = re.compile(r"/(tmp|home|root|work)/")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    from training.presets import save_preset

    root = tmp_path_factory.mktemp("bot-training")
    async with FakeDiscord() as fake:
        server = add_server(fake, "trainers")
        settings = world_settings(root, tiny_checkpoint_dir, fake.token)
        # A tiny-model preset; a high learning rate so that a few steps change the sound.
        tiny = fast_config(tiny_checkpoint_dir, root, lr=0.05, epochs=2)
        save_preset("tiny", tiny, settings.data_dir / "training-presets", "tests: tiny model")
        training = {"overrides": {"cache_dir": root / "cache"}, "env": CHILD_ENV, "poll_seconds": 0.2}
        voice = VoiceLog()
        async with start_bot(fake, settings, voice, training) as bot:
            yield World(fake, bot, voice, settings, [server])


def decoded(path: Path) -> np.ndarray:
    """The track as float32 samples, decoded by ffmpeg as a listener would hear it."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "2", "-ar", "48000", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32)


def wav_samples(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as clip:
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype=np.int16)


def message_about(world: World, server: Server, text: str) -> FakeMessage | None:
    messages = world.fake.channel_messages.get(server.text.id, [])
    return next((m for m in messages if text in m.content), None)


async def refused(world: World, server: Server, user, command: str, **options) -> str:
    _, message = await world.run(server, user, command, **options)
    assert message.ephemeral and message.content.startswith("⚠️"), message.text
    assert not HOST_PATH.search(message.content), message.content
    return message.content


def attachments(world: World, folder: Path) -> dict:
    """Two real audio files and a corrupt one, as a member attaches them."""
    files = {}
    for name, hz in (("synth.wav", 220.0), ("pad.flac", 330.0)):
        files[name] = world.fake.add_attachment(name, write_audio(folder / name, CLIP_SECONDS, hz).read_bytes())
    files[BROKEN] = world.fake.add_attachment(BROKEN, b"ID3 this is not really an mp3" * 10)
    return files


async def made_tracks(world: World, server: Server) -> list[TrackRecord]:
    store = world.bot.stations.store
    plays = await asyncio.to_thread(store.history, server.id, 100)
    buffered = await asyncio.to_thread(store.buffered_tracks, server.id)
    found = {play.track.id: play.track for play in plays}
    found.update({track.id: track for track in buffered})
    return [found[key] for key in sorted(found)]


async def test_a_station_trains_its_sound_from_discord(world: World, tmp_path: Path) -> None:
    server, owner = world.servers[0], world.servers[0].guild.owner
    await server.guild.set_voice(server.alice, server.lounge)
    await server.guild.set_voice(server.dj, server.lounge)
    _, message = await world.run(server, server.dj, "radio_join")
    assert "On air" in message.content

    # A dataset from attachments: the corrupt file is named with the reason, no host path.
    files = attachments(world, tmp_path)
    text = await refused(world, server, server.admin, "radio_dataset add", name="tones", file=files["synth.wav"])
    assert "for the bot's owner" in text
    _, added = await world.run(
        server,
        owner,
        "radio_dataset add",
        name="tones",
        file=files["synth.wav"],
        file2=files["pad.flac"],
        file3=files[BROKEN],
        caption="bright synth arpeggio",
    )
    assert "2 track(s) added" in added.content and "1 refused" in added.content, added.content
    assert f"{BROKEN}: the file holds no MP3 audio" in added.content
    assert not HOST_PATH.search(added.content)
    _, shown = await world.run(server, owner, "radio_dataset show", name="tones")
    assert shown.ephemeral and "2 tracks, 0:01 in all" in shown.content, shown.content
    assert "synth.wav (0.6 s): bright synth arpeggio" in shown.content
    assert f"Refused when added:\n• {BROKEN}" in shown.content
    folder = world.settings.datasets_dir / f"g{server.id}-tones"  # this server's
    assert sorted(p.name for p in folder.glob("*.flac")) == ["001-synth.flac", "002-pad.flac"]
    names = await world.fake.autocomplete(server.guild, owner, "radio_train", "dataset", dataset="", name=ADAPTER)
    assert [c["value"] for c in names] == ["tones"]
    text = await refused(world, server, owner, "radio_train", dataset="tones", name=ADAPTER, preset="huge")
    assert "invalid preset 'huge'" in text and "tiny" in text

    # Two runs: the first starts, the second waits in line with its place.
    _, first = await world.run(server, owner, "radio_train", dataset="tones", name=ADAPTER, preset="tiny", epochs=2)
    assert "Training started (run #1)" in first.content, first.content
    _, second = await world.run(server, owner, "radio_train", dataset="tones", name="second", preset="tiny", epochs=200)
    assert "Run #2 waits in line: 1 run is ahead of it" in second.content, second.content
    _, status = await world.run(server, owner, "radio_train_status")
    assert "#1 adapter **tonal** on **tones**: running" in status.content, status.content
    assert "#2 adapter **second** on **tones**: waits in line, 1 run ahead" in status.content
    assert "an adapter is training" in (world.bot.stations.busy_reason or "")

    # The progress message: edited as it goes, with the loss curve as a PNG.
    board = await world.fake.wait_for(
        lambda: (m := message_about(world, server, f"Adapter **{ADAPTER}** from")) and m.file_edits and m,
        timeout=240,
    )
    (curve,) = board.files
    assert curve.filename == "loss_curve.png" and curve.data.startswith(b"\x89PNG\r\n")
    # Before/after clips: the same prompt, without and with the adapter.
    clips = await world.fake.wait_for(
        lambda: message_about(world, server, f"🎧 Adapter **{ADAPTER}**, at the end"), timeout=60
    )
    assert [f.filename for f in clips.files] == ["before-01.wav", "after-01.wav"]
    before, after = (wav_samples(f.data) for f in clips.files)
    assert before.shape == after.shape and not np.array_equal(before, after)
    assert "bright synth arpeggio" in clips.content
    final = await world.fake.wait_for(lambda: "✅" in board.content and board, timeout=240)
    assert re.search(r"Step (\d+)/\1, epoch 2/2, loss \d\.\d{4}, lr ", final.content), final.content
    assert board.files[0].filename == "loss_curve.png" and board.file_edits >= 2
    assert not HOST_PATH.search(final.content)
    assert (world.settings.adapters_dir / f"g{server.id}-{ADAPTER}").is_dir()

    # The second run starts when the first has ended; it is stopped, keeping what it learnt.
    async def second_training() -> bool:
        progress = world.bot.training.progress
        return progress is not None and progress.run_id == 2 and progress.step > 0

    await world.fake.wait_for(second_training, timeout=240)
    _, stop = await world.run(server, owner, "radio_train_stop", run="#2")
    assert "Stopping #2 adapter **second**" in stop.content, stop.content
    assert (await world.bot.training.wait()).state == "stopped"  # type: ignore[union-attr]
    runs = await asyncio.to_thread(world.bot.stations.store.recent_training_runs, server.id)
    assert [(r.id, r.state) for r in runs] == [(2, "stopped"), (1, "done")]
    assert runs[1].ended_at <= runs[0].started_at  # one after the other

    # A DJ puts it on air with the button; the next song is sung with it.
    button = final.button("radio:onair:")
    assert button["custom_id"] == f"radio:onair:g{server.id}-{ADAPTER}"
    interaction = await world.fake.press(server.guild, server.alice, final, button["custom_id"])
    assert "DJ" in (await world.fake.answer(interaction)).content  # listeners may not
    interaction = await world.fake.press(server.guild, server.dj, final, button["custom_id"])
    assert f"put adapter **{ADAPTER}** on air" in (await world.fake.answer(interaction)).content
    station = world.bot.radio.known_station(server.id)
    assert station is not None and station.settings.adapter == f"g{server.id}-{ADAPTER}"
    await world.run(server, server.alice, "radio_request", theme="a tonal song")
    track = await world.fake.wait_for(lambda: _requested(world, server), timeout=180)
    assert track.track.settings["adapter"] == f"g{server.id}-{ADAPTER}"
    with_adapter = decoded(track.path)
    base = await world.bot.stations.client.submit(SongJob(job_id="same-seed-base", spec=track.spec, steps=TEST_STEPS))
    assert base.track.seed == track.track.seed and base.track.settings["adapter"] is None
    without = decoded(Path(base.track.path))
    # The tiny random VAE mutes what the adapter changes: "audible" is a margin above
    # opus's determinism, not loudness.
    assert with_adapter.shape == without.shape
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
        return status.settings.adapter is None and any("adapter was switched off" in note for note in status.notes)

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
