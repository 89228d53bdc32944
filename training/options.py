"""The command-line options, described once.

Each `Option` names a `TrainConfig` field, its flags, its group (the headings of
seeds/003's argument reference) and the subcommands that accept it. The CLI's
parsers are built from this table, and a test checks docs/training.md against
it, so `--help` and the docs cannot drift apart. Defaults come from
`TrainConfig` itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import (
    ADAPTER_TYPES,
    ATTENTION_BACKENDS,
    ATTENTION_TYPES,
    BASE_MODELS,
    BIAS_CHOICES,
    ESTIMATE_METRICS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    TrainConfig,
)

TRAIN = ("fixed", "vanilla")
ALL = ("fixed", "vanilla", "estimate")


@dataclass(frozen=True)
class Option:
    name: str  # TrainConfig field
    flags: tuple[str, ...]
    help: str
    group: str
    commands: tuple[str, ...] = TRAIN
    kind: str = "str"  # str, int, float, path, list, flag, switch
    choices: tuple[str, ...] | None = None
    required: bool = False

    @property
    def default(self) -> Any:
        for f in dataclasses.fields(TrainConfig):
            if f.name == self.name:
                if f.default_factory is not dataclasses.MISSING:
                    return f.default_factory()
                return f.default
        raise KeyError(self.name)

    def shown_default(self) -> str:
        """The default as the docs and `--help` write it."""
        if self.required:
            return "(required)"
        value = self.default
        if value is None:
            return "(none)"
        if isinstance(value, list):
            return " ".join(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


MODEL = "Model and paths"
DEVICE = "Device and precision"
ADAPTER = "LoRA settings"
LOKR = "LoKR settings"
HYPER = "Training hyperparameters"
CORRECTED = "Corrected training (fixed mode only)"
DATA = "Data loading"
CHECKPOINTS = "Checkpointing"
LOGGING = "Logging, monitoring and samples"
PREPROCESS = "Preprocessing (optional)"
ESTIMATE = "Estimation (estimate only)"

OPTIONS: tuple[Option, ...] = (
    Option(
        "checkpoint_dir",
        ("--checkpoint-dir",),
        "Root checkpoints folder (holds acestep-v15-turbo/, ...) or a diffusers pipeline folder",
        MODEL,
        ALL,
        "path",
        required=True,
    ),
    Option(
        "model_variant",
        ("--model-variant",),
        "Which model: turbo, base, sft, or the folder name of a fine-tune",
        MODEL,
        ALL,
    ),
    Option(
        "base_model",
        ("--base-model",),
        "For a fine-tune: the variant it was made from",
        MODEL,
        ALL,
        choices=BASE_MODELS,
    ),
    Option(
        "dataset_dir",
        ("--dataset-dir",),
        "Folder of preprocessed tensors and manifest.json (required unless --preprocess writes them)",
        MODEL,
        ALL,
        "path",
    ),
    Option(
        "cache_dir",
        ("--cache-dir",),
        "Where original-layout checkpoints are converted once (default DATA_DIR/converted)",
        MODEL,
        ALL,
        "path",
    ),
    Option("device", ("--device",), "auto, cpu, cuda, cuda:N, mps, xpu. Auto: CUDA > MPS > XPU > CPU", DEVICE, ALL),
    Option(
        "precision",
        ("--precision",),
        "Auto: bf16 on CUDA/XPU (fp16 on pre-Ampere CUDA), fp16 on MPS, fp32 on CPU",
        DEVICE,
        ALL,
        choices=PRECISIONS,
    ),
    Option(
        "attention_backend",
        ("--attention-backend",),
        "Attention kernels. Auto: Flash Attention 2 when installed on an Ampere+ GPU, else SDPA",
        DEVICE,
        ALL,
        choices=ATTENTION_BACKENDS,
    ),
    Option("adapter_type", ("--adapter-type",), "lora (PEFT) or lokr (LyCORIS)", ADAPTER, choices=ADAPTER_TYPES),
    Option("rank", ("--rank", "-r"), "LoRA rank", ADAPTER, kind="int"),
    Option("alpha", ("--alpha",), "LoRA scaling factor (usually 2x the rank)", ADAPTER, kind="float"),
    Option("dropout", ("--dropout",), "Dropout on adapter layers, 0.0 to 0.5", ADAPTER, kind="float"),
    Option(
        "attention_type",
        ("--attention-type",),
        "Attention layers to adapt: both (self + cross), self or cross",
        ADAPTER,
        ALL,
        choices=ATTENTION_TYPES,
    ),
    Option(
        "target_modules",
        ("--target-modules",),
        "Projections to adapt (q_proj k_proj v_proj o_proj or to_q ... to_out.0), or "
        "full module names as written by estimate",
        ADAPTER,
        ALL,
        "list",
    ),
    Option(
        "bias",
        ("--bias",),
        "Train biases: none, all or lora_only. Trained biases of layers without LoRA "
        "cannot go into the diffusers export (diffusers' loader and the radio apply the "
        "LoRA matrices only); the PEFT and ComfyUI exports carry them",
        ADAPTER,
        choices=BIAS_CHOICES,
    ),
    Option("lokr_linear_dim", ("--lokr-linear-dim",), "LoKR rank (linear dim)", LOKR, kind="int"),
    Option("lokr_linear_alpha", ("--lokr-linear-alpha",), "LoKR alpha", LOKR, kind="float"),
    Option(
        "lokr_factor", ("--lokr-factor",), "LoKR Kronecker factor; -1 picks the most balanced split", LOKR, kind="int"
    ),
    Option(
        "lokr_decompose_both",
        ("--lokr-decompose-both",),
        "Low-rank decompose both Kronecker factors",
        LOKR,
        kind="flag",
    ),
    Option("lokr_use_tucker", ("--lokr-use-tucker",), "Tucker decomposition", LOKR, kind="flag"),
    Option("lokr_use_scalar", ("--lokr-use-scalar",), "Train an extra scalar per module", LOKR, kind="flag"),
    Option("lokr_weight_decompose", ("--lokr-weight-decompose",), "DoRA-style weight decomposition", LOKR, kind="flag"),
    Option("lr", ("--lr", "--learning-rate"), "Initial learning rate (Prodigy: 1.0)", HYPER, kind="float"),
    Option("batch_size", ("--batch-size",), "Samples per micro-batch", HYPER, ALL, "int"),
    Option(
        "gradient_accumulation", ("--gradient-accumulation",), "Micro-batches per optimizer step", HYPER, kind="int"
    ),
    Option("epochs", ("--epochs",), "Passes through the dataset", HYPER, kind="int"),
    Option(
        "max_steps",
        ("--max-steps",),
        "Stop after this many optimizer steps (the schedule spans them)",
        HYPER,
        kind="int",
    ),
    Option("warmup_steps", ("--warmup-steps",), "Optimizer steps ramping the LR from 10% to 100%", HYPER, kind="int"),
    Option("weight_decay", ("--weight-decay",), "Weight decay", HYPER, kind="float"),
    Option("max_grad_norm", ("--max-grad-norm",), "Gradient clipping norm (0: off)", HYPER, kind="float"),
    Option("seed", ("--seed",), "Random seed (same seed + data = same adapter)", HYPER, ALL, "int"),
    Option("optimizer_type", ("--optimizer-type",), "adamw, adamw8bit, adafactor, prodigy", HYPER, choices=OPTIMIZERS),
    Option("scheduler_type", ("--scheduler-type",), "LR schedule; Prodigy forces constant", HYPER, choices=SCHEDULERS),
    Option(
        "gradient_checkpointing",
        ("--gradient-checkpointing",),
        "Recompute activations in backward (less memory, ~30% slower)",
        HYPER,
        ALL,
        "switch",
    ),
    Option(
        "offload_encoder",
        ("--offload-encoder",),
        "Keep VAE, text and condition encoders on the CPU during training",
        HYPER,
        ALL,
        "flag",
    ),
    Option(
        "cfg_ratio", ("--cfg-ratio",), "CFG dropout rate to the learned null embedding", CORRECTED, ("fixed",), "float"
    ),
    Option(
        "timestep_mu",
        ("--timestep-mu",),
        "Logit-normal mean (default: the model config's timestep_mu, else -0.4)",
        CORRECTED,
        ("fixed",),
        "float",
    ),
    Option(
        "timestep_sigma",
        ("--timestep-sigma",),
        "Logit-normal std (default: the model config's timestep_sigma, else 1.0)",
        CORRECTED,
        ("fixed",),
        "float",
    ),
    Option("num_workers", ("--num-workers",), "Data loading worker processes", DATA, ALL, "int"),
    Option("pin_memory", ("--pin-memory",), "Pin batches in CPU memory (CUDA only)", DATA, ALL, "switch"),
    Option("prefetch_factor", ("--prefetch-factor",), "Batches each worker prefetches", DATA, ALL, "int"),
    Option("persistent_workers", ("--persistent-workers",), "Keep workers alive between epochs", DATA, ALL, "switch"),
    Option(
        "val_split",
        ("--val-split",),
        "Fraction of tracks held out for a deterministic validation loss (0: none)",
        DATA,
        kind="float",
    ),
    Option("val_every", ("--val-every",), "Validate every N epochs", DATA, kind="int"),
    Option(
        "output_dir",
        ("--output-dir",),
        "Where adapters, checkpoints, samples and logs go",
        CHECKPOINTS,
        kind="path",
        required=True,
    ),
    Option(
        "save_every", ("--save-every",), "Full checkpoint every N epochs (0: only at the end)", CHECKPOINTS, kind="int"
    ),
    Option(
        "resume_from",
        ("--resume-from",),
        "Checkpoint folder to continue exactly from; its saved settings are the defaults",
        CHECKPOINTS,
        kind="path",
    ),
    Option(
        "force_resume",
        ("--force-resume",),
        "Resume even though the dataset changed since the checkpoint",
        CHECKPOINTS,
        kind="flag",
    ),
    Option("log_dir", ("--log-dir",), "TensorBoard folder (default {output-dir}/runs)", LOGGING, kind="path"),
    Option("log_every", ("--log-every",), "Log loss and LR every N optimizer steps", LOGGING, kind="int"),
    Option(
        "log_heavy_every",
        ("--log-heavy-every",),
        "Per-layer gradient norms and timestep histogram every N steps (0: off)",
        LOGGING,
        kind="int",
    ),
    Option("log_file", ("--log-file",), "Plain log file (default {output-dir}/train.log)", LOGGING, kind="path"),
    Option(
        "progress_file",
        ("--progress-file",),
        "JSON-lines progress stream (default {output-dir}/progress.jsonl)",
        LOGGING,
        kind="path",
    ),
    Option(
        "stop_file",
        ("--stop-file",),
        "Creating this file stops training cleanly (default {output-dir}/STOP)",
        LOGGING,
        kind="path",
    ),
    Option(
        "sample_every_n_epochs",
        ("--sample-every-n-epochs",),
        "Generate sample clips every N epochs (0: off)",
        LOGGING,
        kind="int",
    ),
    Option(
        "sample_prompts",
        ("--sample-prompts",),
        "JSON list of prompts or a text file with one caption per line (default: the first track's caption)",
        LOGGING,
        kind="path",
    ),
    Option("sample_duration", ("--sample-duration",), "Seconds per sample clip", LOGGING, kind="int"),
    Option(
        "sample_steps", ("--sample-steps",), "Diffusion steps per sample (default: the model's)", LOGGING, kind="int"
    ),
    Option(
        "preview",
        ("--preview",),
        "Before/after clips: each sample prompt also without the adapter (same "
        "caption, lyrics, seed), and a last pair when training ends",
        LOGGING,
        kind="flag",
    ),
    Option("preprocess", ("--preprocess",), "Preprocess audio before training", PREPROCESS, kind="flag"),
    Option("audio_dir", ("--audio-dir",), "Folder of audio (wav, flac, mp3, ogg)", PREPROCESS, kind="path"),
    Option("dataset_json", ("--dataset-json",), "Dataset JSON with captions and lyrics", PREPROCESS, kind="path"),
    Option("tensor_output", ("--tensor-output",), "Where preprocessed tensors are written", PREPROCESS, kind="path"),
    Option("max_duration", ("--max-duration",), "Seconds kept per track (longer: truncated)", PREPROCESS, kind="float"),
    Option(
        "vae_tile_seconds",
        ("--vae-tile-seconds",),
        "VAE encode tile length (default 30 s, 15 s on GPUs with 8 GB or less)",
        PREPROCESS,
        kind="float",
    ),
    Option("estimate_batches", ("--estimate-batches",), "Batches to measure", ESTIMATE, ("estimate",), "int"),
    Option("top_k", ("--top-k",), "Modules to suggest", ESTIMATE, ("estimate",), "int"),
    Option(
        "estimate_metric",
        ("--estimate-metric",),
        "grad_norm (mean gradient norm) or fisher (mean squared gradient per weight)",
        ESTIMATE,
        ("estimate",),
        choices=ESTIMATE_METRICS,
    ),
    Option(
        "estimate_output",
        ("--estimate-output",),
        "Ranking JSON (default {dataset-dir}/estimate.json; the suggestion goes beside it as target_modules.txt)",
        ESTIMATE,
        ("estimate",),
        "path",
    ),
)

GROUPS = (MODEL, DEVICE, ADAPTER, LOKR, HYPER, CORRECTED, DATA, CHECKPOINTS, LOGGING, PREPROCESS, ESTIMATE)


def options_for(command: str) -> list[Option]:
    return [option for option in OPTIONS if command in option.commands]


def parse_value(option: Option, text: str) -> Any:
    """Turn one typed answer (wizard, preset) into the field's type."""
    if option.kind == "int":
        return int(text)
    if option.kind == "float":
        return float(text)
    if option.kind == "path":
        return Path(text).expanduser()
    if option.kind == "list":
        return text.split()
    if option.kind in ("flag", "switch"):
        lowered = text.strip().lower()
        if lowered in ("y", "yes", "true", "1", "on"):
            return True
        if lowered in ("n", "no", "false", "0", "off"):
            return False
        raise ValueError("answer yes or no")
    return text


OPTION_BY_NAME = {option.name: option for option in OPTIONS}
