"""The station tests' shared worker (tiny checkpoint, template songwriter): one per
test module, with a fresh database and StationManager for each test."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from bot.station import StationConfig
from bot.station.manager import StationManager
from bot.store import Store
from engine.worker.client import WorkerClient
from tests.support.radio_helpers import radio_settings, template_worker


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path):
    return radio_settings(tmp_path_factory.mktemp("station"), tiny_checkpoint_dir)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(settings):
    client = WorkerClient(template_worker(settings))
    await client.start()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="module")
async def radio(client, tmp_path: Path):
    """`await radio(**config)`: a manager on a fresh database, sharing the worker."""
    opened: list[StationManager] = []

    async def open_radio(path: Path | None = None, **config) -> StationManager:
        store = Store(path or tmp_path / "radio.sqlite3")
        manager = StationManager(store, client, StationConfig(**{"default_duration": 10, **config}), owns_client=False)
        await manager.start()
        opened.append(manager)
        return manager

    yield open_radio
    for manager in opened:
        await manager.close()
        manager.store.close()
    if client.busy_reason is not None:
        await client.resume()
