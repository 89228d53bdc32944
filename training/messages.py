"""What the command line and the wizard both tell the user: the settings summary shown
before a run starts, and which errors a user can fix (said as lines, no traceback)."""

from __future__ import annotations

from training.config import ConfigError, TrainConfig, TrainingError


def summary(config: TrainConfig, command: str) -> str:
    """The settings that matter most, for the confirmation prompt."""
    adapter = (
        f"LoRA rank {config.rank} alpha {config.alpha:g}"
        if config.adapter_type == "lora"
        else f"LoKR dim {config.lokr_linear_dim} alpha {config.lokr_linear_alpha:g} factor {config.lokr_factor}"
    )
    lines = [
        f"mode            {command}",
        f"model           {config.checkpoint_dir} ({config.model_variant})",
        f"data            {config.tensor_output if config.preprocess else config.dataset_dir}",
        f"output          {config.output_dir}",
        f"adapter         {adapter}, {config.attention_type} attention, {' '.join(config.target_modules)}",
        f"optimizer       {config.optimizer_type}, lr {config.lr:g}, "
        f"{config.effective_scheduler} schedule, warmup {config.warmup_steps}",
        f"batches         {config.batch_size} x {config.gradient_accumulation} accumulation, "
        f"{config.epochs} epochs" + (f", at most {config.max_steps} steps" if config.max_steps else ""),
        f"memory          gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}"
        f", encoder offload {'on' if config.offload_encoder else 'off'}, "
        f"device {config.device}, precision {config.precision}",
    ]
    if config.resume_from is not None:
        lines.append(f"resume          from {config.resume_from} (its settings)")
    if config.preprocess:
        lines.insert(
            2,
            f"preprocess      {config.audio_dir or config.dataset_json} -> "
            f"{config.tensor_output} (max {config.max_duration:g} s)",
        )
    return "\n".join(lines)


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a user can fix: each says what is wrong (no traceback needed)."""
    from engine.checkpoint.find import CheckpointError
    from training.storage import DatasetFormatError
    from training.tracks import DatasetError

    return (CheckpointError, DatasetFormatError, DatasetError, TrainingError, OSError)


def error_lines(exc: BaseException) -> list[str]:
    return exc.lines if isinstance(exc, ConfigError) else [str(exc)]
