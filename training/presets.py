"""Named presets: saved sets of hyperparameters (never paths).

Shipped presets are the VRAM profiles of seeds/000 (training/presets/*.json):
`comfortable` (24 GB+), `standard` (16-24 GB), `tight` (10-16 GB) and
`minimal` (under 10 GB). Presets saved from the wizard live in
`DATA_DIR/training-presets/` (or the folder passed in) and may not take a
shipped preset's name. A preset is a JSON object of `TrainConfig` fields plus
an optional `description`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from training.config import PATH_FIELDS, ConfigError, TrainConfig
from training.storage import write_json

SHIPPED_DIR = Path(__file__).with_name("presets")
#: Settings a preset never carries: where things are, and what a run is.
NOT_IN_PRESETS = PATH_FIELDS | {
    "mode",
    "preprocess",
    "model_variant",
    "base_model",
    "force_resume",
}
PRESET_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_IN_PRESETS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def user_presets_dir() -> Path:
    from engine.settings import load_settings

    return load_settings().data_dir / "training-presets"


def _folder(folder: Path | None) -> Path:
    return folder if folder is not None else user_presets_dir()


def list_presets(folder: Path | None = None) -> dict[str, str]:
    """Name -> description, shipped presets first."""
    found: dict[str, str] = {}
    for source in (SHIPPED_DIR, _folder(folder)):
        if source.is_dir():
            for path in sorted(source.glob("*.json")):
                try:
                    found.setdefault(path.stem, str(json.loads(path.read_text()).get("description", "")))
                except ValueError:
                    found.setdefault(path.stem, "(unreadable)")
    return found


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ConfigError([f"preset name {name!r} is not allowed: use 1-40 letters, digits, '_' or '-'"])


def load_preset(name: str, folder: Path | None = None) -> dict[str, Any]:
    """The settings of preset `name` (shipped or saved), checked field by field."""
    _check_name(name)
    for source in (SHIPPED_DIR, _folder(folder)):
        path = source / f"{name}.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError as exc:
                raise ConfigError([f"preset {path}: not valid JSON ({exc})"]) from None
            data.pop("description", None)
            unknown = sorted(set(data) - set(PRESET_FIELDS))
            if unknown:
                raise ConfigError([f"preset {path}: unknown setting(s) {', '.join(unknown)}"])
            return data
    available = ", ".join(list_presets(folder)) or "none"
    raise ConfigError([f"no preset named {name!r}: available are {available}"])


def save_preset(name: str, config: TrainConfig, folder: Path | None = None, description: str = "") -> Path:
    _check_name(name)
    if (SHIPPED_DIR / f"{name}.json").is_file():
        raise ConfigError([f"{name!r} is a shipped preset: choose another name"])
    values = config.to_dict()
    data = {"description": description, **{k: values[k] for k in PRESET_FIELDS}}
    path = _folder(folder) / f"{name}.json"
    write_json(path, data)
    return path


def delete_preset(name: str, folder: Path | None = None) -> None:
    _check_name(name)
    path = _folder(folder) / f"{name}.json"
    if not path.is_file():
        raise ConfigError([f"no saved preset named {name!r} (shipped presets cannot be deleted)"])
    path.unlink()


def apply_preset(config: TrainConfig, name: str, folder: Path | None = None) -> TrainConfig:
    return config.replace(**load_preset(name, folder))
