"""engine.background: tasks are held until they end and failures are logged."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from engine.background import BackgroundTasks

log = logging.getLogger("tests.background")


async def test_a_failing_task_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise OSError("disk gone")

    tasks = BackgroundTasks(log, "guild 7: background task")
    with caplog.at_level(logging.ERROR, logger="tests.background"):
        tasks.spawn(fail())
        await tasks.wait()
    (record,) = caplog.records
    assert record.getMessage() == "guild 7: background task failed"
    # The traceback is in the log: as exc_info, or as exc_text where the secret scrubber
    # (engine.logs, on the root handlers once a test set the logging up) formatted it.
    assert "Traceback" in caplog.text and "OSError: disk gone" in caplog.text
    assert len(tasks) == 0


async def test_tasks_are_held_until_done_and_wait_covers_tasks_started_meanwhile() -> None:
    tasks = BackgroundTasks(log)
    finished: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        finished.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(second())
        finished.append("first")

    tasks.spawn(first())
    gc.collect()  # nothing else holds the task: the set must
    assert len(tasks) == 1
    await tasks.wait()
    assert finished == ["first", "second"]
    assert len(tasks) == 0


async def test_cancel_ends_every_task_without_logging_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks(log)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    spawned = [tasks.spawn(forever()) for _ in range(3)]
    await started.wait()
    with caplog.at_level(logging.ERROR, logger="tests.background"):
        await tasks.cancel()
    assert all(task.cancelled() for task in spawned)
    assert len(tasks) == 0
    assert caplog.records == []
