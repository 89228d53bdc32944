"""The GPU worker process and its asyncio client, for real: a spawned process with the
tiny checkpoint, real ffmpeg, real SIGKILLs. One worker is shared by the module;
tests that need another (a failed start, the real songwriter model, a dying
parent) start their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import pytest_asyncio
from pydantic import ValidationError

from engine.audio import probe
from engine.settings import PROJECT_ROOT
from engine.songwriter.gguf_files import ensure_bundled_model
from engine.spec import SongSpec, StationStyle
from engine.worker.client import (
    JobFailedError,
    WorkerBusyError,
    WorkerClient,
    WorkerClosedError,
    WorkerEvent,
    WorkerStartError,
)
from engine.worker.process import WorkerConfig
from engine.worker.process_handle import describe_exit
from engine.worker.protocol import (
    JobDone,
    JobFailure,
    JobProgress,
    JobWritten,
    SongJob,
    Submit,
    WorkerReady,
    read_from_worker,
    read_to_worker,
)
from tests.support.radio_helpers import TEST_STEPS, radio_settings, template_worker

module_loop = pytest.mark.asyncio(loop_scope="module")

STYLE = StationStyle(genre="jazz", max_duration=30)
SPEC = SongSpec(
    title="Given Song",
    caption="jazz, piano",
    lyrics="[verse]\nla la\nla la",
    bpm=100,
    key="C major",
    duration=10,
    seed=7,
)


def job(job_id: str, **changes) -> SongJob:
    return SongJob(**{"job_id": job_id, "theme": "rain", "style": STYLE, "duration": 10, **changes})


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    return radio_settings(tmp_path_factory.mktemp("worker"), tiny_checkpoint_dir)


@pytest.fixture(scope="module")
def events() -> list[tuple[float, WorkerEvent]]:
    return []


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(settings, events):
    client = WorkerClient(template_worker(settings), on_event=lambda e: events.append((time.monotonic(), e)))
    await client.start()
    yield client
    await client.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the protocol -------------------------------------------------------------


def test_protocol_messages_round_trip_as_json() -> None:
    submit = Submit(job=job("a", recent=(SPEC,), spec=SPEC))
    assert read_to_worker(submit.to_bytes()) == submit
    for message in (
        WorkerReady(pid=1, device="cpu", songwriter="template", load_seconds=1.5),
        JobProgress(job_id="a", stage="singing", step=3, total=8),
        JobWritten(job_id="a", spec=SPEC, source="model", seconds=2.0),
        JobFailure(job_id="a", reason="oom", message="out of GPU memory"),
    ):
        assert read_from_worker(message.to_bytes()) == message
    with pytest.raises(ValidationError, match="type"):
        read_from_worker(b'{"type": "bogus"}')
    with pytest.raises(ValidationError, match="at most 1000 characters"):
        job("a", theme="x" * 10_000)
    with pytest.raises(ValidationError, match="greater than or equal to 10"):
        job("a", duration=5)


def test_exit_descriptions_name_the_signal_or_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "unknown exit"


def test_client_settings_are_checked(settings) -> None:
    with pytest.raises(ValueError, match="max_in_flight=0: allowed is 1 to 8"):
        WorkerClient(template_worker(settings), max_in_flight=0)
    with pytest.raises(ValueError, match="stall_timeout=-1"):
        WorkerClient(template_worker(settings), stall_timeout=-1)


# --- the shared worker ----------------------------------------------------------


@module_loop
async def test_makes_songs_writing_the_next_while_singing_this_one(client) -> None:
    log: list[tuple[str, str]] = []

    def follow(job_id: str):
        return {
            "on_progress": lambda p: log.append((job_id, p.describe())),
            "on_written": lambda w: log.append((job_id, f"written by {w.source}")),
        }

    await client.wait_for_slot()
    first = client.submit(job("overlap-1"), **follow("1"))
    second = client.submit(job("overlap-2", theme="snow"), **follow("2"))
    assert client.free_slots == 0
    done = [await first, await second]
    log_first_done = [entry for entry in log if entry[0] == "1"][-1]
    # The second song was written before the first one finished singing.
    assert log.index(("2", "written by template")) < log.index(log_first_done)
    assert [e for e in log if e[0] == "1"][:3] == [
        ("1", "writing"),
        ("1", "written by template"),
        ("1", f"singing 0/{TEST_STEPS}"),
    ]
    assert ("1", f"singing {TEST_STEPS}/{TEST_STEPS}") in log
    for result in done:
        assert isinstance(result, JobDone)
        info = probe(Path(result.track.path))
        assert info.codec == "opus" and info.duration == pytest.approx(10.0, abs=0.05)
        assert result.sing_seconds > 0 and result.write_seconds >= 0
        assert result.track.settings["steps"] == TEST_STEPS
    assert client.free_slots == 2


@module_loop
async def test_a_given_spec_skips_the_songwriter(client) -> None:
    stages: list[str] = []
    handle = client.submit(
        job("given", spec=SPEC),
        on_progress=lambda p: stages.append(p.stage),
        on_written=lambda w: stages.append("written"),
    )
    done = await handle
    assert done.track.spec.title == "Given Song" and done.track.seed == 7
    assert "writing" not in stages and "written" not in stages
    assert done.write_seconds == 0


@module_loop
async def test_submit_refuses_beyond_the_slots_and_duplicates(client) -> None:
    await client.wait_for_slot()
    first = client.submit(job("slots-1", spec=SPEC))
    with pytest.raises(ValueError, match="already in flight"):
        client.submit(job("slots-1", spec=SPEC))
    second = client.submit(job("slots-2", spec=SPEC))
    with pytest.raises(WorkerBusyError, match="all 2 slots are in use"):
        client.submit(job("slots-3", spec=SPEC))
    with pytest.raises(TypeError, match="SongJob"):
        client.submit({"job_id": "x"})  # type: ignore[arg-type]
    await first
    await second


@module_loop
async def test_jobs_sing_with_their_adapter_and_a_broken_one_fails_only_its_job(client, settings) -> None:
    from tests.support.adapter_files import write_diffusers_lora

    write_diffusers_lora(settings.adapters_dir / "warm")
    (settings.adapters_dir / "hollow").mkdir()
    await client.wait_for_slot()
    warm = await client.submit(job("adapter-warm", spec=SPEC, adapter="warm", adapter_scale=2.0))
    assert (warm.track.settings["adapter"], warm.track.settings["adapter_scale"]) == ("warm", 2.0)
    for name, problem in [("hollow", "no adapter weights"), ("gone", "there is no folder")]:
        with pytest.raises(JobFailedError) as failed:
            await client.submit(job(f"adapter-{name}", spec=SPEC, adapter=name))
        assert failed.value.reason == "adapter_error"
        assert f"adapter '{name}'" in failed.value.message and problem in failed.value.message
    base = await client.submit(job("adapter-none", spec=SPEC))
    assert base.track.settings["adapter"] is None  # the worker sang on, without the adapter


@module_loop
async def test_kill_9_is_noticed_at_once_and_the_job_is_retried_once(client, events) -> None:
    old_pid = client.pid
    killed_at: list[float] = []
    retries: list[str] = []

    def kill_when_singing(progress: JobProgress) -> None:
        if progress.stage == "singing" and not killed_at:
            killed_at.append(time.monotonic())
            os.kill(old_pid, signal.SIGKILL)

    handle = client.submit(job("kill-once"), on_progress=kill_when_singing, on_retry=retries.append)
    done = await handle
    assert retries == ["worker_died (SIGKILL)"]
    assert handle.deaths == 1 and handle.attempt == 2
    assert done.write_seconds == 0  # the retry reused the spec written the first time
    assert Path(done.track.path).is_file()
    died = [(t, e) for t, e in events if e.kind == "died" and e.pid == old_pid]
    assert len(died) == 1 and died[0][1].job_ids == ("kill-once",)
    assert died[0][0] - killed_at[0] < 2.0  # noticed within seconds (the sentinel)
    assert client.pid != old_pid and not alive(old_pid)


@module_loop
async def test_a_silent_worker_is_killed_as_stalled_and_the_job_retried(client) -> None:
    """SIGSTOP freezes the worker mid-song: no more messages, as if it hung.
    (Two deaths failing a job are tested with the station, tests/bot/station/test_station.py.)"""
    frozen: list[int] = []
    retries: list[str] = []

    def freeze_when_singing(progress: JobProgress) -> None:
        if progress.stage == "singing" and not frozen:
            frozen.append(client.pid)
            os.kill(client.pid, signal.SIGSTOP)

    client.stall_timeout = 2.0
    try:
        handle = client.submit(job("stalled"), on_progress=freeze_when_singing, on_retry=retries.append)
        done = await handle
    finally:
        client.stall_timeout = 600.0
    assert retries == ["worker_stalled"] and handle.deaths == 1
    assert Path(done.track.path).is_file()
    assert client.pid != frozen[0] and not alive(frozen[0])


@module_loop
async def test_pause_frees_the_gpu_process_and_resume_starts_it_again(client, events) -> None:
    handle = client.submit(job("before-pause", spec=SPEC))
    old_pid = client.pid
    await client.pause("training an adapter")
    assert handle.future.done()  # the job in flight was finished first
    assert Path((await handle).track.path).is_file()
    assert client.pid is None and not alive(old_pid)
    assert client.free_slots == 0 and client.busy_reason == "training an adapter"
    held = client.submit(job("while-paused", spec=SPEC))  # held, not lost
    with pytest.raises(ValueError, match="give a short reason"):
        await client.pause("  ")
    await client.resume()
    assert client.busy_reason is None and client.pid not in (None, old_pid)
    assert Path((await held).track.path).is_file()
    kinds = [e.kind for _, e in events]
    assert kinds[-3:] == ["paused", "ready", "resumed"]


# --- workers of their own ---------------------------------------------------------


@module_loop
async def test_a_worker_that_cannot_start_says_why(settings, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    client = WorkerClient(template_worker(settings, checkpoint=missing))
    with pytest.raises(WorkerStartError, match="no-such-checkpoint"):
        await client.start()
    assert client.state == "unavailable" and client.free_slots == 0
    await client.close()


@module_loop
async def test_the_real_songwriter_model_then_close_with_a_job_in_flight(settings) -> None:
    ensure_bundled_model(settings.models_dir)
    client = WorkerClient(WorkerConfig.from_settings(settings, songwriter="model", steps=2, songwriter_max_tokens=240))
    await client.start()
    pid = client.pid
    try:
        written: list[JobWritten] = []
        handle = client.submit(job("real-model", theme="rainy night in Tokyo", seed=11), on_written=written.append)
        done = await handle
        assert written[0].source == "model", written[0].fallback_reason
        assert done.track.spec == written[0].spec.model_copy(update={"seed": done.track.seed})
        assert done.write_seconds == pytest.approx(written[0].seconds)

        assert pid in [child.pid for child in psutil.Process().children()]
        in_flight = client.submit(job("closing", spec=SPEC))
    finally:
        await client.close()
    with pytest.raises(WorkerClosedError):
        await in_flight
    assert not alive(pid) and pid not in [c.pid for c in psutil.Process().children()]
    with pytest.raises(WorkerClosedError):
        client.submit(job("after-close"))


PARENT = """
import asyncio, sys
from engine.worker.process import WorkerConfig
from engine.worker.client import WorkerClient

async def main():
    client = WorkerClient(WorkerConfig.model_validate_json(sys.argv[1]))
    ready = await client.start()
    print(ready.pid, flush=True)
    await asyncio.Event().wait()

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_worker_exits_when_the_bot_is_killed(settings, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), template_worker(settings).model_dump_json()],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        worker_pid = int(parent.stdout.readline())
        assert alive(worker_pid)
        parent.kill()
        parent.wait()
        psutil.Process(worker_pid).wait(timeout=30)  # raises TimeoutExpired if orphaned
    finally:
        parent.kill()
        parent.wait()
    assert not alive(worker_pid)
