"""Shared fixtures. Tiny-model fixtures live in tests/tiny_models.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import ENV_FILE_VARIABLE, Settings


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty `.env` in a temporary folder, with every settings key cleared from
    the environment, so each test sees only what it sets."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text("")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(path))
    return path
