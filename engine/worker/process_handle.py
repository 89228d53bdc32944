"""One worker process, from the bot's side: start it, read its messages, end it.

Blocking helpers for `engine.worker.client.WorkerClient`, which calls them in
threads. Only the reader thread reaps a process (`read_messages` joins it once
it ended), so a signal from `join_or_kill` can never reach a recycled pid.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from pydantic import ValidationError

from engine.worker.protocol import FailureReason, read_from_worker

log = logging.getLogger("engine.worker.client")


def describe_exit(exitcode: int | None) -> str:
    """`SIGKILL`, `exit code 3`, ...: how a process ended, for messages and stats."""
    if exitcode is None:
        return "unknown exit"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass
class WorkerProcess:
    """One worker process and the reader thread that watches it."""

    generation: int
    process: BaseProcess
    conn: Connection
    reader: threading.Thread | None = None
    fatal: str | None = None
    kill_reason: tuple[FailureReason, str] | None = None


def spawn_worker(context: BaseContext, target: Callable[..., None], config_json: str, generation: int) -> WorkerProcess:
    """Start `target(child_end, config_json, parent_pid)` in a new process."""
    parent_end, child_end = context.Pipe(duplex=True)
    process = context.Process(
        target=target,
        args=(child_end, config_json, os.getpid()),
        name=f"radio-worker-{generation}",
        daemon=True,  # multiprocessing also ends it if this process exits normally
    )
    process.start()
    child_end.close()  # so the pipe reports EOF when the worker dies
    log.info("worker process %d started", process.pid)
    return WorkerProcess(generation, process, parent_end)


def read_messages(proc: WorkerProcess, deliver: Callable[[Any], bool]) -> None:
    """Hand each message of `proc` to `deliver` (False: stop reading) until the process
    ends or its pipe closes; then reap it. Runs on the reader thread."""
    while True:
        ready = wait([proc.conn, proc.process.sentinel])
        if proc.conn not in ready:
            break
        try:
            data = proc.conn.recv_bytes()
        except (EOFError, OSError):
            break
        try:
            message = read_from_worker(data)
        except ValidationError as exc:
            log.error("worker sent a malformed message: %s", exc)
            continue
        if not deliver(message):
            break
    proc.process.join()


def join_or_kill(process: BaseProcess, timeout: float) -> None:
    """Wait for the process to end, then SIGTERM, then SIGKILL (only the sentinel is
    watched: the reader thread alone reaps the process)."""
    if wait([process.sentinel], timeout):
        return
    log.warning("worker %s did not stop in %g s: terminating it", process.pid, timeout)
    process.terminate()
    if wait([process.sentinel], 3):
        return
    log.error("worker %s ignored SIGTERM: killing it", process.pid)
    process.kill()
    wait([process.sentinel])
