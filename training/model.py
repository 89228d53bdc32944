"""Load ACE-Step 1.5 for training through the engine's own loader.

`--checkpoint-dir` and `--model-variant` map onto `engine.checkpoint.load.load_pipeline`,
so the trainer accepts exactly what the engine accepts (diffusers folders, and
original `checkpoints/` folders converted once into the cache). The pipeline
arrives on the CPU in the run's precision; the caller moves only what a stage
needs to the device.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.checkpoint.find import CheckpointInfo, inspect_checkpoint
from training.config import TrainConfig
from training.devices import Runtime

if TYPE_CHECKING:
    from diffusers import AceStepPipeline

log = logging.getLogger(__name__)

#: ACE-Step 1.5's pre-training values (the released configs' `timestep_mu`/`_sigma`).
DEFAULT_TIMESTEP_MU = -0.4
DEFAULT_TIMESTEP_SIGMA = 1.0


@dataclass
class TrainingModel:
    pipe: AceStepPipeline
    info: CheckpointInfo
    runtime: Runtime

    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipe.transformer

    @property
    def is_turbo(self) -> bool:
        return bool(self.pipe.is_turbo)


def cache_dir_for(config: TrainConfig) -> Path:
    if config.cache_dir is not None:
        return config.cache_dir
    from engine.checkpoint.load import converted_cache_dir
    from engine.settings import load_settings

    return converted_cache_dir(load_settings())


def find_model(config: TrainConfig) -> CheckpointInfo:
    """The checkpoint `--checkpoint-dir`/`--model-variant` name (no torch work)."""
    assert config.checkpoint_dir is not None
    variant = config.model_variant
    folder = Path(config.checkpoint_dir)
    if (folder / "model_index.json").is_file():
        # A single diffusers pipeline folder is the model itself, whatever its name.
        return inspect_checkpoint(folder)
    return inspect_checkpoint(folder, variant)


def load_model(config: TrainConfig, runtime: Runtime) -> TrainingModel:
    """Load the pipeline on the CPU with base weights in the run's precision."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from engine.checkpoint.load import load_pipeline

    info = find_model(config)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        pipe, info = load_pipeline(
            info,
            dtype=runtime.dtype,
            attention=runtime.attention,
            cache_dir=cache_dir_for(config),
        )
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    for name in ("transformer", "condition_encoder", "text_encoder", "vae"):
        module = getattr(pipe, name)
        module.requires_grad_(False)
        module.eval()
    return TrainingModel(pipe, info, runtime)


def timestep_parameters(config: TrainConfig, model: TrainingModel) -> tuple[float, float]:
    """(mu, sigma) of the logit-normal sampler: the flags, else the model config's
    `timestep_mu`/`timestep_sigma` (the original `config.json` holds them; the
    diffusers transformer config does not), else ACE-Step's -0.4 / 1.0."""
    found: dict[str, float] = {}
    sources = [dict(model.transformer.config)]
    original = model.info.dit_dir / "config.json"
    if model.info.layout == "original" and original.is_file():
        sources.append(json.loads(original.read_text()))
    for source in sources:
        for key in ("timestep_mu", "timestep_sigma"):
            if key not in found and isinstance(source.get(key), (int, float)):
                found[key] = float(source[key])
    mu = config.timestep_mu
    if mu is None:
        mu = found.get("timestep_mu", DEFAULT_TIMESTEP_MU)
    sigma = config.timestep_sigma
    if sigma is None:
        sigma = found.get("timestep_sigma", DEFAULT_TIMESTEP_SIGMA)
    return mu, sigma


def move(modules: list[torch.nn.Module], device: torch.device) -> None:
    for module in modules:
        module.to(device)
    if device.type == "cpu" and torch.cuda.is_available():
        torch.cuda.empty_cache()
