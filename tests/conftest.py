"""Shared fixtures; the tiny-model ones (engine.checkpoint.tiny, built once per session) are at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.settings import BotSettings
from engine.settings import ENV_FILE_VARIABLE


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `.env` in a temporary folder, with every settings key cleared from
    the environment, so each test sees only what it sets."""
    for name in BotSettings.model_fields:  # the engine's keys and the bot's
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text("")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ACE-Step 1.5 (engine.checkpoint.tiny) in the diffusers layout, built
    once per session. Shared: copy it before changing anything in it."""
    from engine.checkpoint.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "diffusers")


@pytest.fixture(scope="session")
def tiny_original_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model as `tiny_checkpoint_dir` (same weights) in the original
    ACE-Step layout: `acestep-v15-turbo/`, `vae/`, `Qwen3-Embedding-0.6B/`. Shared."""
    from engine.checkpoint.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoints", layout="original")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint_dir: Path) -> tuple[Path, Path]:
    """The trainer tests' dataset: (audio folder, preprocessed folder), made once."""
    from tests.support.train_helpers import shared_dataset

    return shared_dataset(tmp_path_factory.getbasetemp(), tiny_checkpoint_dir)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A real local Ray cluster for the session's Ray tests: this machine's 2 CPUs, and 3
    GPUs declared to Ray that CPU actors stand in for (nothing here uses CUDA), so
    placement by GPU works as on a real cluster."""
    from engine.worker.cluster.connect import connect, disconnect

    joined = connect("local", num_cpus=2, num_gpus=3)
    yield
    disconnect(joined)
