"""A training process ends when the process that started it dies (training.launcher):
through the kernel on Linux, and through the watchdog thread anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT

CHILD = """
import os, signal, sys, threading, time
from training import launcher
marker = sys.argv[1]
def stop(*_):
    open(marker, "w").write("SIGTERM")
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
parent = os.getppid()
if sys.argv[2] == "kernel":
    assert launcher._set_parent_death_signal(signal.SIGTERM)
else:
    threading.Thread(target=launcher._watch_parent, args=(parent, 0.05), daemon=True).start()
open(marker + ".ready", "w").write(str(os.getpid()))
time.sleep(120)
"""
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel path is Linux's")
@pytest.mark.parametrize("way", ["kernel", "watchdog"])
def test_the_trainer_gets_sigterm_when_its_parent_is_killed(tmp_path: Path, way: str) -> None:
    marker = tmp_path / "child"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(marker), way], cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{marker}.ready").is_file():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)  # a timer: another process starts
        child = int(Path(f"{marker}.ready").read_text())
        parent.kill()  # SIGKILL: the parent cannot tell anyone
        parent.wait()
        deadline = time.monotonic() + 10
        while not marker.is_file():
            assert time.monotonic() < deadline, f"the child ({way}) outlived its parent"
            time.sleep(0.05)
        assert marker.read_text() == "SIGTERM"
        with pytest.raises(ProcessLookupError):
            for _ in range(100):  # exited (reaped by whoever adopted it) or a zombie
                os.kill(child, 0)
                if Path(f"/proc/{child}/cmdline").read_bytes() == b"":
                    raise ProcessLookupError
                time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
