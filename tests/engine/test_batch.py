"""BATCH_SIZE: different songs made in one generation, from the engine to the station."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf

from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store
from engine.checkpoint.tiny import build_tiny_pipeline
from engine.gpu.tiers import DeviceInfo, resolve
from engine.music_engine import MusicEngine
from engine.settings import load_settings
from engine.spec import SongSpec
from engine.worker.client import WorkerClient
from engine.worker.protocol import JobProgress, SongJob, SubmitBatch, can_share_batch
from tests.support.radio_helpers import radio_settings, template_worker, until

RAIN = SongSpec(
    title="Rainy Night",
    caption="lo-fi piano, soft rain",
    lyrics="[verse]\nrain on the window",
    bpm=90,
    key="A minor",
    duration=12,
    seed=1234,
)
SUN = SongSpec(
    title="Sunny Morning",
    caption="upbeat funk, slap bass",
    lyrics="[chorus]\nsol de la mañana",
    bpm=124,
    key="D major",
    time_signature="3/4",
    duration=10,
    language="es",
    seed=77,
)
CPU = DeviceInfo("cpu", None, "CPU", None, None, None, False)


def read(track) -> np.ndarray:
    return sf.read(track.path, dtype="float32")[0]


@pytest.fixture
def engine(env_file: Path, tmp_path: Path) -> MusicEngine:
    settings = load_settings(tracks_dir=tmp_path / "tracks")
    policy = dataclasses.replace(resolve(settings, CPU), max_batch=2)
    return MusicEngine(settings, policy=policy, pipeline=build_tiny_pipeline("turbo", seed=0))


def test_two_different_songs_are_made_in_one_pipeline_call(engine: MusicEngine) -> None:
    pipe = engine.pipe
    prompts: list[list[str]] = []
    dit_batches: list[int] = []
    pipe.text_encoder.register_forward_pre_hook(
        lambda _m, _a, kw: prompts.append(pipe.tokenizer.batch_decode(kw["input_ids"])),
        with_kwargs=True,
    )
    pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kw: dit_batches.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    rain, sun = engine.generate_batch([RAIN, SUN], fmt="wav")

    assert len(prompts) == 1 and dit_batches == [2] * 8  # one call: one text pass, 8 steps
    first, second = prompts[0]
    assert "lo-fi piano" in first and "- bpm: 90" in first and "- keyscale: A minor" in first
    assert "- duration: 12 seconds" in first and "- timesignature: 4" in first
    assert "upbeat funk" in second and "- bpm: 124" in second and "- keyscale: D major" in second
    assert "- duration: 10 seconds" in second and "- timesignature: 3" in second

    assert (rain.spec.title, rain.seed, sun.spec.title, sun.seed) == (
        "Rainy Night",
        1234,
        "Sunny Morning",
        77,
    )
    assert rain.settings["batch"] == sun.settings["batch"] == 2
    assert rain.timings["dit"] == sun.timings["dit"]  # the same call
    assert rain.duration == pytest.approx(12.0) and sun.duration == pytest.approx(10.0)
    sun_audio = read(sun)
    assert np.abs(sun_audio[-10:]).max() < 1e-3  # cut to its 10 s with a fade, no click
    assert np.abs(sun_audio[: len(sun_audio) // 2]).max() > 0.01

    # Each song is the one a call of its own makes (up to float noise of batched matmuls).
    alone = engine.generate(RAIN, fmt="wav")[0]
    assert np.allclose(read(alone), read(rain), atol=2e-3)
    assert not np.allclose(read(rain)[: len(sun_audio)], sun_audio, atol=0.05)


def test_a_batch_larger_than_the_tier_allows_is_made_in_several_calls(engine) -> None:
    engine.policy = dataclasses.replace(engine.policy, max_batch=1)
    tracks = engine.generate_batch([RAIN, SUN], fmt="wav")
    assert [t.spec.title for t in tracks] == ["Rainy Night", "Sunny Morning"]
    assert [t.settings["batch"] for t in tracks] == [1, 1]
    assert tracks[1].duration == pytest.approx(10.0)


def test_only_jobs_that_can_share_a_generation_are_batched() -> None:
    a = SongJob(job_id="a", theme="rain", duration=60)
    assert can_share_batch([a], a.model_copy(update={"job_id": "b", "duration": 50}))
    assert not can_share_batch([a], a.model_copy(update={"job_id": "b", "duration": 30}))
    assert not can_share_batch([a], a.model_copy(update={"job_id": "b", "adapter": "lofi"}))
    with pytest.raises(ValueError, match="must share adapter"):
        SubmitBatch(jobs=(a, a.model_copy(update={"job_id": "b", "adapter_scale": 0.5})))
    with pytest.raises(ValueError, match="different job ids"):
        SubmitBatch(jobs=(a, a))


module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def batching_client(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    # No GPU here: MAX_CUDA_VRAM=8 gives the CPU tier 4's limits (batch up to 4
    # with the songwriter off the GPU), so BATCH_SIZE=2 stands.
    root = tmp_path_factory.mktemp("batch")
    settings = radio_settings(root, tiny_checkpoint_dir, batch_size=2, max_cuda_vram=8)
    client = WorkerClient(template_worker(settings))
    await client.start()
    yield client
    await client.close()


@module_loop
async def test_a_batch_takes_one_slot_and_is_sent_again_as_a_batch_after_a_death(
    batching_client: WorkerClient,
) -> None:
    client = batching_client
    await client.wait_for_slot()
    jobs = [
        SongJob(job_id="rain", spec=RAIN.model_copy(update={"duration": 10})),
        SongJob(job_id="sun", spec=SUN),
    ]
    killed: list[int] = []
    retries: list[str] = []

    def kill_when_singing(progress: JobProgress) -> None:
        if progress.stage == "singing" and not killed:
            killed.append(client.pid)
            os.kill(client.pid, signal.SIGKILL)

    handles = client.submit_batch(
        jobs,
        [
            {"on_progress": kill_when_singing, "on_retry": retries.append},
            {"on_retry": retries.append},
        ],
    )
    assert client.free_slots == client.max_in_flight - 1  # one generation, one slot
    with pytest.raises(ValueError, match="allowed is 2 to 2"):
        client.submit_batch([SongJob(job_id=f"x{i}", theme="x") for i in range(3)], [{}] * 3)
    done = [await handle for handle in handles]
    assert retries == ["worker_died (SIGKILL)"] * 2 and client.pid != killed[0]
    assert [d.track.spec.title for d in done] == ["Rainy Night", "Sunny Morning"]
    assert [d.track.settings["batch"] for d in done] == [2, 2]  # still one generation
    assert client.free_slots == client.max_in_flight


@module_loop
async def test_the_station_makes_two_due_songs_in_one_generation(batching_client: WorkerClient, tmp_path: Path) -> None:
    assert batching_client.batch_size == 2
    store = Store(tmp_path / "radio.sqlite3")
    manager = StationManager(
        store,
        batching_client,
        StationConfig(buffer_size=2, default_duration=10),
        owns_client=False,
    )
    await manager.start()
    try:
        station = await manager.add_station(7)
        # Two requests come in while nothing is made (off air a station makes only
        # requests): once generation resumes, both are due at once.
        await manager.pause_generation("tests: two requests at once", release_gpu=False)
        for user_id, theme in ((1, "rain on a tin roof"), (2, "a sunny morning")):
            await station.request(user_id, f"user{user_id}", theme)
        await manager.resume_generation()
        await until(lambda: len(station.buffered) == 2, station.wait_changed)
        assert all(record.path.is_file() for record in station.buffered)
        made = [record.track for record in station.buffered]
        assert [track.settings["batch"] for track in made] == [2, 2]
        assert made[0].timings["dit"] == made[1].timings["dit"]  # one generation
        assert made[0].spec.title != made[1].spec.title or made[0].seed != made[1].seed
    finally:
        await manager.close()
        store.close()
