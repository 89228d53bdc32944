"""One typed configuration for everything the trainer does.

`TrainConfig` holds every setting of preprocessing, training and estimation;
the CLI (`train.py`), the wizard, presets and the bot all build one and hand it
to the library. The defaults here are the single source of the defaults shown
by `--help` and written in docs/training.md (seeds/003's argument reference).

A config is plain data: it round-trips through JSON (`to_dict` / `from_dict`),
so the bot can write one to a file and start a training process with it.
`check(command)` names every bad value and what is allowed, before anything
heavy is loaded.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Command = Literal["fixed", "vanilla", "estimate", "preprocess"]

MODES = ("fixed", "vanilla")
ADAPTER_TYPES = ("lora", "lokr")
ATTENTION_TYPES = ("both", "self", "cross")
BIAS_CHOICES = ("none", "all", "lora_only")
OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "prodigy")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
ATTENTION_BACKENDS = ("auto", "sdpa", "flash_attention_2")
BASE_MODELS = ("turbo", "base", "sft")
ESTIMATE_METRICS = ("grad_norm", "fisher")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?")
#: Projection names as the original ACE-Step trainer (and seeds/003) spell them.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


class TrainingError(RuntimeError):
    """A run cannot go on for a reason the user can fix (the message says how)."""


class ConfigError(ValueError):
    """One or more settings are invalid; `lines` has one message per setting."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass
class TrainConfig:
    """Every setting of the trainer. Field names are the CLI flags without `--`
    and with `_` for `-` (`--gradient-accumulation` -> `gradient_accumulation`)."""

    mode: str = "fixed"

    # Model and paths
    checkpoint_dir: Path | None = None
    model_variant: str = "turbo"
    base_model: str | None = None
    dataset_dir: Path | None = None
    cache_dir: Path | None = None

    # Device and precision
    device: str = "auto"
    precision: str = "auto"
    attention_backend: str = "auto"

    # Adapter
    adapter_type: str = "lora"
    rank: int = 64
    alpha: float = 128.0
    dropout: float = 0.1
    attention_type: str = "both"
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    bias: str = "none"
    lokr_linear_dim: int = 64
    lokr_linear_alpha: float = 128.0
    lokr_factor: int = -1
    lokr_decompose_both: bool = False
    lokr_use_tucker: bool = False
    lokr_use_scalar: bool = False
    lokr_weight_decompose: bool = False

    # Training hyperparameters
    lr: float = 1e-4
    batch_size: int = 1
    gradient_accumulation: int = 4
    epochs: int = 100
    max_steps: int | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    optimizer_type: str = "adamw"
    scheduler_type: str = "cosine"
    gradient_checkpointing: bool = True
    offload_encoder: bool = False

    # Corrected training
    cfg_ratio: float = 0.15
    timestep_mu: float | None = None
    timestep_sigma: float | None = None

    # Data loading
    num_workers: int = 4
    pin_memory: bool = True
    prefetch_factor: int = 2
    persistent_workers: bool = True
    val_split: float = 0.0
    val_every: int = 1

    # Checkpointing
    output_dir: Path | None = None
    save_every: int = 10
    resume_from: Path | None = None
    force_resume: bool = False

    # Logging, monitoring and samples
    log_dir: Path | None = None
    log_every: int = 10
    log_heavy_every: int = 50
    log_file: Path | None = None
    progress_file: Path | None = None
    stop_file: Path | None = None
    sample_every_n_epochs: int = 0
    sample_prompts: Path | None = None
    sample_duration: int = 10
    sample_steps: int | None = None
    preview: bool = False

    # Preprocessing
    preprocess: bool = False
    audio_dir: Path | None = None
    dataset_json: Path | None = None
    tensor_output: Path | None = None
    max_duration: float = 240.0
    vae_tile_seconds: float | None = None

    # Estimation
    estimate_batches: int = 5
    top_k: int = 16
    estimate_metric: str = "grad_norm"
    estimate_output: Path | None = None

    # --- derived locations ---------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.log_dir or _need(self.output_dir, "output_dir") / "runs"

    @property
    def progress_path(self) -> Path:
        return self.progress_file or _need(self.output_dir, "output_dir") / "progress.jsonl"

    @property
    def stop_path(self) -> Path:
        return self.stop_file or _need(self.output_dir, "output_dir") / "STOP"

    @property
    def log_path(self) -> Path:
        return self.log_file or _need(self.output_dir, "output_dir") / "train.log"

    @property
    def training_data_dir(self) -> Path:
        """Where training reads tensors: what `--preprocess` writes
        (`--tensor-output`), else `--dataset-dir`."""
        if self.preprocess and self.tensor_output is not None:
            return self.tensor_output
        return _need(self.dataset_dir, "dataset_dir")

    @property
    def effective_scheduler(self) -> str:
        """Prodigy finds its own step size: its schedule is always constant (seeds/003)."""
        return "constant" if self.optimizer_type == "prodigy" else self.scheduler_type

    # --- (de)serialisation -----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from `to_dict` output (or a preset); unknown keys are an error."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError([f"unknown setting(s) {', '.join(unknown)}: allowed are {', '.join(names)}"])
        values = {k: Path(v) if k in PATH_FIELDS and v is not None else v for k, v in data.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    # --- validation --------------------------------------------------------------
    def errors(self, command: Command) -> list[str]:
        """One message per invalid setting for `command`, each starting with its flag."""
        errors = _check_common(self)
        if command in ("fixed", "vanilla"):
            errors += _check_training(self)
            if self.preprocess:
                errors += _check_preprocess(self)
        elif command == "preprocess":
            errors += _check_preprocess(self)
        elif command == "estimate":
            errors += _check_estimate(self)
        return errors

    def check(self, command: Command) -> None:
        """Raise `ConfigError` naming every invalid setting for `command`."""
        errors = self.errors(command)
        if errors:
            raise ConfigError(errors)


PATH_FIELDS = frozenset(
    f.name for f in dataclasses.fields(TrainConfig) if "Path" in str(f.type) and "list" not in str(f.type)
)


def _need(value: Path | None, name: str) -> Path:
    if value is None:
        raise ConfigError([f"{flag(name)} is required here"])
    return value


def flag(name: str) -> str:
    """The CLI spelling of a field: `gradient_accumulation` -> `--gradient-accumulation`."""
    return "--" + name.replace("_", "-")


class _Checker:
    """Collects one message per bad value, each naming the flag and what is allowed."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.errors: list[str] = []

    def bad(self, name: str, allowed: str) -> None:
        value = getattr(self.config, name)
        self.errors.append(f"{flag(name)} {value!r} is not allowed: {allowed}")

    def choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self.config, name) not in choices:
            self.bad(name, f"use one of {', '.join(choices)}")

    def number(
        self,
        name: str,
        low: float,
        high: float,
        *,
        integer: bool = False,
        low_open: bool = False,
        optional: bool = False,
    ) -> None:
        value = getattr(self.config, name)
        if value is None and optional:
            return
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        ok = ok and not isinstance(value, bool)
        if ok:
            ok = (value > low if low_open else value >= low) and value <= high
        if not ok:
            bound = f"above {low:g}" if low_open else f"from {low:g}"
            self.bad(name, f"use {kind} {bound} to {high:g}")

    def path(self, name: str, *, required: bool, must_exist: bool, directory: bool) -> None:
        value = getattr(self.config, name)
        if value is None:
            if required:
                self.errors.append(f"{flag(name)} is required")
            return
        path = Path(value)
        if must_exist and not (path.is_dir() if directory else path.is_file()):
            what = "folder" if directory else "file"
            self.errors.append(f"{flag(name)} {str(path)!r}: no such {what}")


def _check_common(config: TrainConfig) -> list[str]:
    c = _Checker(config)
    c.path("checkpoint_dir", required=True, must_exist=True, directory=True)
    if not isinstance(config.model_variant, str) or not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9_.-]*", config.model_variant
    ):
        c.bad("model_variant", "use turbo, base, sft or the name of a fine-tune folder")
    if config.base_model is not None:
        c.choice("base_model", BASE_MODELS)
    if not isinstance(config.device, str) or not DEVICE_PATTERN.fullmatch(config.device):
        c.bad("device", "use auto, cpu, cuda, cuda:N, mps, xpu or xpu:N")
    c.choice("precision", PRECISIONS)
    c.choice("attention_backend", ATTENTION_BACKENDS)
    c.choice("mode", MODES)
    c.number("seed", 0, 2**32 - 1, integer=True)
    c.number("batch_size", 1, 64, integer=True)
    c.choice("attention_type", ATTENTION_TYPES)
    if not (
        isinstance(config.target_modules, list)
        and config.target_modules
        and all(isinstance(m, str) and m for m in config.target_modules)
    ):
        c.bad("target_modules", "give one or more module names, e.g. q_proj k_proj v_proj o_proj")
    c.number("cfg_ratio", 0.0, 1.0)
    c.number("timestep_mu", -10.0, 10.0, optional=True)
    c.number("timestep_sigma", 0.0, 10.0, low_open=True, optional=True)
    return c.errors


def _check_training(config: TrainConfig) -> list[str]:
    c = _Checker(config)
    if not config.preprocess:
        c.path("dataset_dir", required=True, must_exist=True, directory=True)
    c.path("output_dir", required=True, must_exist=False, directory=True)
    c.path("resume_from", required=False, must_exist=True, directory=True)
    c.path("sample_prompts", required=False, must_exist=True, directory=False)
    c.choice("adapter_type", ADAPTER_TYPES)
    c.choice("bias", BIAS_CHOICES)
    c.choice("optimizer_type", OPTIMIZERS)
    c.choice("scheduler_type", SCHEDULERS)
    c.number("rank", 1, 1024, integer=True)
    c.number("alpha", 0, 4096, low_open=True)
    c.number("dropout", 0.0, 0.5)
    c.number("lokr_linear_dim", 1, 100000, integer=True)
    c.number("lokr_linear_alpha", 0, 100000, low_open=True)
    if config.lokr_factor != -1:
        c.number("lokr_factor", 1, 1024, integer=True)
    c.number("lr", 0, 10, low_open=True)
    c.number("gradient_accumulation", 1, 1024, integer=True)
    c.number("epochs", 1, 1_000_000, integer=True)
    c.number("max_steps", 1, 100_000_000, integer=True, optional=True)
    c.number("warmup_steps", 0, 1_000_000, integer=True)
    c.number("weight_decay", 0.0, 1.0)
    c.number("max_grad_norm", 0.0, 1e6)
    c.number("num_workers", 0, 64, integer=True)
    c.number("prefetch_factor", 1, 64, integer=True)
    c.number("val_split", 0.0, 0.5)
    c.number("val_every", 1, 1_000_000, integer=True)
    c.number("save_every", 0, 1_000_000, integer=True)
    c.number("log_every", 1, 1_000_000, integer=True)
    c.number("log_heavy_every", 0, 1_000_000, integer=True)
    c.number("sample_every_n_epochs", 0, 1_000_000, integer=True)
    c.number("sample_duration", 10, 60, integer=True)
    c.number("sample_steps", 1, 200, integer=True, optional=True)
    return c.errors


def _check_preprocess(config: TrainConfig) -> list[str]:
    c = _Checker(config)
    c.path("audio_dir", required=config.dataset_json is None, must_exist=True, directory=True)
    c.path("dataset_json", required=False, must_exist=True, directory=False)
    c.path("tensor_output", required=True, must_exist=False, directory=True)
    c.number("max_duration", 0.5, 600.0)
    c.number("vae_tile_seconds", 4.0, 600.0, optional=True)
    return c.errors


def _check_estimate(config: TrainConfig) -> list[str]:
    c = _Checker(config)
    c.path("dataset_dir", required=True, must_exist=True, directory=True)
    c.number("estimate_batches", 1, 100_000, integer=True)
    c.number("top_k", 1, 100_000, integer=True)
    c.choice("estimate_metric", ESTIMATE_METRICS)
    return c.errors
