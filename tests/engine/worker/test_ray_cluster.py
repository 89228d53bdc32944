"""Song workers on a real local Ray cluster (WORKER_BACKEND=ray), end to end.

The session's Ray cluster (conftest `ray_cluster`: 2 CPUs, 3 GPUs declared
that CPU actors stand in for) runs two song workers of the real bot (real
discord.py against the fake Discord, fake voice draining every frame, tiny
checkpoint, template songwriter) and, for training, a third actor. The tests
share one bot and run in order: several servers share the two workers; an
adapter trained on the third actor while the two sing reaches a worker that
never saw it; a worker killed with SIGKILL in the middle of a song has the
song finished by the other one, and no station goes silent; with no GPU to
spare, training pauses the songs and frees the workers' GPUs, as on one machine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio

from bot.adapter_library import server_key
from bot.station import Station
from bot.training.request import RunRequest
from bot.training.runs import TRAINING_REASON
from engine.settings import PROJECT_ROOT
from engine.worker.client import WorkerEvent
from engine.worker.cluster.backend import RayBackend
from tests.support.bot_world import Server, World, add_server, start_bot, world_settings
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_voice import VoiceLog
from tests.support.train_helpers import CHILD_ENV, fast_config, make_audio_dir

module_loop = pytest.mark.asyncio(loop_scope="module")

ADAPTER = "cluster-tones"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    from training.presets import save_preset

    root = tmp_path_factory.mktemp("ray-bot")
    async with FakeDiscord() as fake:
        servers = [add_server(fake, f"cluster {i}") for i in range(4)]
        settings = world_settings(
            root,
            tiny_checkpoint_dir,
            fake.token,
            buffer_size=2,
            worker_backend="ray",
            ray_workers=2,
            ray_cpus_per_worker=0.5,
            ray_training_gpus=1,
            shard_count=2,
        )
        make_audio_dir(settings.datasets_dir / "tones", ["synth.wav"], broken=False)
        tiny = fast_config(tiny_checkpoint_dir, root, lr=0.05, epochs=1)
        save_preset("tiny", tiny, settings.data_dir / "training-presets", "tests: tiny model")
        training = {"overrides": {"cache_dir": root / "cache"}, "env": CHILD_ENV, "poll_seconds": 0.2}
        voice = VoiceLog()
        # Real time (20 ms a frame): one surviving worker keeps up with one station, so
        # a silence could only come from the lost song, which is what is tested.
        async with start_bot(fake, settings, voice, training, frame_delay=0.02) as bot:
            yield World(fake, bot, voice, settings, servers)


def backend(world: World) -> RayBackend:
    client = world.bot.stations.client
    assert isinstance(client, RayBackend)
    return client


async def on_air(world: World, server: Server) -> Station:
    await server.guild.set_voice(server.alice, server.lounge)
    await server.guild.set_voice(server.admin, server.lounge)
    _, message = await world.run(server, server.admin, "radio_join")
    assert "On air" in message.content
    station = world.bot.radio.known_station(server.id)
    assert station is not None
    return station


async def songs_made(station: Station) -> int:
    return (await station.stats()).songs_generated


def worst_gap(world: World, server: Server) -> float:
    """The longest silence between two tracks that followed each other in voice."""
    plays = [p for p in world.voice.plays_in(server.id) if p.first_frame is not None]
    gaps = [
        after.first_frame - before.last_frame
        for before, after in itertools.pairwise(plays)
        if before.last_frame is not None and after.first_frame is not None
    ]
    return max(gaps, default=0.0)


@module_loop
async def test_two_workers_share_the_songs_of_several_servers(world: World) -> None:
    # One bot process on two gateway shards (SHARD_COUNT=2) sees every server once.
    assert world.bot.shard_count == 2 and sorted(world.bot.shards) == [0, 1]
    assert sorted(g.id for g in world.bot.guilds) == sorted(s.id for s in world.servers)
    workers = backend(world).workers
    assert [w["ready"] for w in workers] == [True, True]
    assert workers[0]["pid"] != workers[1]["pid"]  # two actors, two processes
    stations = [await on_air(world, server) for server in world.servers[:3]]
    for station in stations:
        await world.fake.wait_for(lambda s=station: songs_made(s), timeout=180)
    await world.fake.wait_for(lambda: all(w["made"] for w in backend(world).workers), timeout=180)
    made = [w["made"] for w in backend(world).workers]
    assert sum(made) >= 3 and min(made) >= 1, made
    # The audio came back through the object store into the bot's own TRACKS_DIR.
    records = [play.track for play in await stations[0].history(1)] + list(stations[0].buffered)
    record = records[0]
    assert record.path.parent == world.settings.tracks_dir and record.path.is_file()
    for server in world.servers[1:3]:
        await world.bot.radio.leave(server.id)


@module_loop
async def test_an_adapter_trained_on_a_third_actor_while_two_sing_reaches_a_new_worker(
    world: World,
) -> None:
    station = world.bot.radio.known_station(world.servers[0].id)
    assert station is not None
    before = await songs_made(station)
    held = [await w.actor.adapters.remote() for w in backend(world).pool.workers]
    assert held == [{}, {}]  # no worker has ever seen an adapter

    guild_id = world.servers[0].id
    progress = await world.bot.training.start(RunRequest(guild_id, "tones", ADAPTER, preset="tiny", epochs=1))
    assert not progress.pauses_songs  # a GPU of its own: the songs go on
    busy: list[str | None] = []
    while world.bot.training.running:
        busy.append(world.bot.stations.busy_reason)
        await asyncio.sleep(0.2)  # sample whether generation was ever paused
    progress = await world.bot.training.wait()
    assert progress is not None and progress.state == "done", progress
    during = await songs_made(station) - before
    assert busy and set(busy) == {None} and during >= 1, (busy[-3:], during)
    key = server_key(guild_id, ADAPTER)  # the server's own adapter
    assert (world.settings.adapters_dir / key).is_dir()  # brought back to the bot

    await station.set_adapter(ADAPTER)

    async def sung_with_adapter() -> bool:
        return any(r.track.settings.get("adapter") == key for r in station.buffered)

    await world.fake.wait_for(sung_with_adapter, timeout=180)
    name, digest, _ = await backend(world).adapters.reference(key)
    held = [await w.actor.adapters.remote() for w in backend(world).pool.workers]
    assert {name: digest} in held, held  # it reached a worker through the object store
    await station.set_adapter(None)


@module_loop
async def test_a_worker_killed_mid_song_has_its_song_finished_by_the_other_and_no_silence(
    world: World,
) -> None:
    await world.bot.radio.leave(world.servers[0].id)
    server = world.servers[3]
    station = await on_air(world, server)
    ray_backend = backend(world)
    events: list[WorkerEvent] = []
    manager_events = ray_backend.on_event
    assert manager_events is not None

    def record(event: WorkerEvent) -> None:
        events.append(event)
        manager_events(event)

    ray_backend.on_event = record
    await world.fake.wait_for(lambda: len(station.buffered) >= 2, timeout=180)

    victim = None
    while victim is None:  # a job in the middle of its song (decoding after the last step)
        for handle in ray_backend.in_flight:
            ours = int(handle.job_id.split("-")[1]) in station.making  # job-<id>-<attempt>
            worker = next(w for w in ray_backend.pool.workers if handle.job_id in w.jobs)
            if ours and handle.progress is not None and handle.progress.stage == "singing":
                victim = (handle, worker)
        await asyncio.sleep(0.005)
    handle, worker = victim
    os.kill(worker.info["pid"], signal.SIGKILL)
    done = await asyncio.wait_for(handle.future, 120)
    assert handle.deaths == 1 and Path(done.track.path).is_file()
    survivor = next(w for w in ray_backend.pool.workers if w is not worker)
    assert survivor.made >= 1
    died = [e for e in events if e.kind == "died"]
    assert died and f"{worker.name} lost" in died[0].message

    # Ray restarts the lost worker; meanwhile and after, every station plays on.
    await world.fake.wait_for(lambda: worker.ready, timeout=180)
    ready = [e for e in events if e.kind == "ready" and worker.name in e.message]
    assert ready and ready[0].pid != died[0].pid
    played = len(world.voice.plays_in(server.id))
    await world.fake.wait_for(lambda: len(world.voice.plays_in(server.id)) >= played + 2, 120)
    assert worst_gap(world, server) < 0.1, worst_gap(world, server)
    # /radio_stats counts the lost attempt and says how the workers are doing.
    _, message = await world.run(server, server.alice, "radio_stats")
    assert f"worker\\_died ({worker.name} lost): 1" in message.text, message.text  # markdown
    assert "2 of 2 Ray workers ready; 1 lost since the start and restarted by Ray" in message.text


@module_loop
async def test_with_no_gpu_to_spare_training_pauses_the_songs_as_on_one_machine(
    world: World,
) -> None:
    import ray

    class GpuHolder:  # defined here so that Ray sends the class itself to its worker
        def ready(self) -> bool:
            return True

    # Something else holds the cluster's third GPU: the trainer has none of its own.
    holder = ray.remote(num_gpus=1, num_cpus=0)(GpuHolder).remote()
    await holder.ready.remote()
    try:
        progress = await world.bot.training.start(
            RunRequest(world.servers[0].id, "tones", "paused-run", preset="tiny", epochs=1)
        )
        assert progress.pauses_songs
        # The song workers were removed so the trainer could have their GPU.
        assert backend(world).state == "released" and not backend(world).workers
        assert TRAINING_REASON in (world.bot.stations.busy_reason or "")
        progress = await world.bot.training.wait()
        assert progress is not None and progress.state == "done", progress
    finally:
        ray.kill(holder)
    # Generation resumed: the workers are back (the first one ready is enough to sing).
    assert world.bot.stations.busy_reason is None
    await world.fake.wait_for(lambda: [w["ready"] for w in backend(world).workers] == [True] * 2, timeout=180)


def test_a_bot_with_ray_and_no_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RADIO_ENV_FILE": str(tmp_path / "none.env"),
        "DISCORD_TOKEN": "x",
        "WORKER_BACKEND": "ray",
        "RAY_ADDRESS": "127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no Ray cluster answers at RAY_ADDRESS=127.0.0.1:9" in lines[0]
    assert "ray start --head" in lines[0] and "RAY_ADDRESS=local" in lines[0]


def test_the_local_backend_imports_nothing_of_ray(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from bot.app import RadioBot, training_place\n"
        "from bot.station.manager import manager_from_settings\n"
        "from bot.settings import load_bot_settings\n"
        f"settings = load_bot_settings(data_dir={str(tmp_path)!r})\n"
        "manager = manager_from_settings(settings)\n"
        "assert type(manager.client).__name__ == 'WorkerClient'\n"
        "assert training_place(settings) is None\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    env = {**os.environ, "RADIO_ENV_FILE": str(tmp_path / "none.env")}
    env.pop("WORKER_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
