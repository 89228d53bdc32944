"""Helpers shared by the worker, station and local-listener tests."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.settings import BotSettings, load_bot_settings
from engine.worker.process import WorkerConfig

#: Diffusion steps in tests: enough to see progress, few enough to be quick.
TEST_STEPS = 4


def radio_settings(root: Path, checkpoint: Path, **changes: Any) -> BotSettings:
    """Settings for a radio under `root` with the tiny checkpoint and 10 s songs, read
    from an empty `.env` (the values given here win over the environment)."""
    root.mkdir(parents=True, exist_ok=True)
    env = root / "empty.env"
    env.write_text("")
    values: dict[str, Any] = {
        "checkpoint_dir": checkpoint,
        "data_dir": root / "data",
        "tracks_dir": root / "tracks",
        "models_dir": root / "models",
        "adapters_dir": root / "adapters",
        "datasets_dir": root / "datasets",
        "log_file": root / "logs" / "radio.log",
        "device": "cpu",
        "default_duration": 10,
        "max_cuda_vram": None,
        "log_level": "INFO",
    }
    return load_bot_settings(env, **{**values, **changes})


def template_worker(settings: BotSettings, **changes: Any) -> WorkerConfig:
    """A worker config with the instant template songwriter and few steps."""
    return WorkerConfig.from_settings(settings, **{"songwriter": "template", "steps": TEST_STEPS, **changes})


async def until(
    condition: Callable[[], Awaitable[bool] | bool],
    changed: Callable[[], Awaitable[None]],
    timeout: float = 120.0,
) -> None:
    """Wait until `condition()` holds, checking it again after each `changed()`.

    `timeout` only turns a hang into a failure; nothing waits for it to pass.
    """

    async def check() -> bool:
        result = condition()
        return await result if asyncio.iscoroutine(result) else bool(result)

    async def wait() -> None:
        while not await check():
            await changed()

    await asyncio.wait_for(wait(), timeout)


def tone(path: Path, seconds: float, *options: str, frequency: float = 440) -> Path:
    """A sine tone made by ffmpeg into `path`; `options` go before the file name
    (channels, codec, bitrate, ...), so the format follows them or the suffix."""
    source = f"sine=frequency={frequency}:duration={seconds}"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source, *options, str(path)], check=True
    )
    return path
