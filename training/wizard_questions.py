"""The wizard's questions for a training run (seeds/002's order): adapter, mode,
model, folders, preset, then basic or advanced settings."""

from __future__ import annotations

from pathlib import Path

from training.wizard_ask import Question, available_variants


def train_questions(presets: tuple[str, ...]) -> list[Question]:
    """The training flow's questions, in order; `presets` are the names to offer."""

    def lora(a):
        return a.get("adapter_type") == "lora"

    def lokr(a):
        return a.get("adapter_type") == "lokr"

    def advanced(a):
        return a.get("depth") == "advanced"

    def several_models(a):
        return bool(available_variants(Path(a["checkpoint_dir"])))

    return [
        Question(
            "adapter_type",
            "Adapter",
            ("lora", "lokr"),
            help="lora: stable (PEFT); lokr: Kronecker factors (LyCORIS), experimental",
        ),
        Question(
            "mode",
            "Training mode",
            ("fixed", "vanilla"),
            help="fixed: corrected objective (recommended); vanilla: the original",
        ),
        Question("checkpoint_dir", "Checkpoints folder"),
        Question("model_variant", "Model", when=several_models),
        Question("dataset_dir", "Preprocessed dataset folder"),
        Question("output_dir", "Output folder"),
        Question(
            "preset",
            "Start from a preset (Enter: none)",
            presets,
            optional=True,
            help="shipped presets are the VRAM profiles; see docs/training.md",
        ),
        Question(
            "depth",
            "Settings",
            ("basic", "advanced"),
            help="basic: the few that matter, good defaults; advanced: everything",
        ),
        Question("epochs", "Epochs"),
        Question("lr", "Learning rate"),
        Question("rank", "LoRA rank", when=lora),
        Question("alpha", "LoRA alpha", when=lora),
        Question("lokr_linear_dim", "LoKR linear dim", when=lokr),
        Question("lokr_linear_alpha", "LoKR alpha", when=lokr),
        Question("save_every", "Save a checkpoint every N epochs"),
        Question("dropout", "Adapter dropout", when=advanced),
        Question("attention_type", "Attention layers", ("both", "self", "cross"), when=advanced),
        Question("target_modules", "Target modules", when=advanced),
        Question("bias", "Train biases", ("none", "all", "lora_only"), when=lambda a: advanced(a) and lora(a)),
        Question("lokr_factor", "LoKR factor (-1: automatic)", when=lambda a: advanced(a) and lokr(a)),
        Question("lokr_use_tucker", "LoKR Tucker decomposition?", when=lambda a: advanced(a) and lokr(a)),
        Question(
            "lokr_weight_decompose", "LoKR DoRA-style weight decomposition?", when=lambda a: advanced(a) and lokr(a)
        ),
        Question("optimizer_type", "Optimizer", ("adamw", "adamw8bit", "adafactor", "prodigy"), when=advanced),
        Question(
            "scheduler_type", "LR schedule", ("cosine", "linear", "constant", "constant_with_warmup"), when=advanced
        ),
        Question("warmup_steps", "Warmup steps", when=advanced),
        Question("batch_size", "Batch size", when=advanced),
        Question("gradient_accumulation", "Gradient accumulation", when=advanced),
        Question("max_grad_norm", "Gradient clipping norm", when=advanced),
        Question("weight_decay", "Weight decay", when=advanced),
        Question("cfg_ratio", "CFG dropout ratio", when=lambda a: advanced(a) and a.get("mode") == "fixed"),
        Question("gradient_checkpointing", "Enable gradient checkpointing?", when=advanced),
        Question("offload_encoder", "Offload encoder/VAE to CPU?", when=advanced),
        Question("device", "Device", when=advanced),
        Question("precision", "Precision", ("auto", "bf16", "fp16", "fp32"), when=advanced),
        Question("seed", "Seed", when=advanced),
        Question("val_split", "Validation fraction", when=advanced),
        Question("sample_every_n_epochs", "Sample clips every N epochs (0: off)", when=advanced),
        Question("num_workers", "Data loading workers", when=advanced),
    ]
