"""Find, convert and load ACE-Step 1.5 into diffusers' `AceStepPipeline`.

    info = find_checkpoint(settings)                       # CheckpointInfo, no torch
    pipe, info = load_pipeline(info, dtype=policy.dtype, attention=policy.attention,
                               cache_dir=converted_cache_dir(settings))

`load_pipeline` returns a `LoadedPipeline` (unpacks as `pipe, info`) with the
pipeline on the CPU; the engine decides what goes to the GPU and when. An
original-layout checkpoint is converted once into `cache_dir` (see
engine/checkpoint/convert.py) and loaded from there afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from engine.checkpoint.convert import ensure_converted
from engine.checkpoint.find import (
    HOW_TO_GET,
    CheckpointError,
    CheckpointInfo,
    find_checkpoint,
    inspect_checkpoint,
)
from engine.gpu.tiers import flash_attention_installed
from engine.settings import Settings

if TYPE_CHECKING:
    from diffusers import AceStepPipeline

__all__ = [
    "ATTENTION_CHOICES",
    "DTYPES",
    "CheckpointError",
    "CheckpointInfo",
    "LoadedPipeline",
    "apply_attention",
    "converted_cache_dir",
    "find_checkpoint",
    "inspect_checkpoint",
    "load_pipeline",
    "resolve_dtype",
]

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION_CHOICES = ("sdpa", "flash_attention_2")
#: diffusers attention backend per choice. `flash_varlen` rather than `flash`:
#: ACE-Step's processor rejects padded masks (batches of lyrics) with plain `flash`.
_DIFFUSERS_BACKENDS = {"sdpa": "native", "flash_attention_2": "flash_varlen"}
_ATTENTION_COMPONENTS = (
    "transformer",
    "condition_encoder",
    "audio_tokenizer",
    "audio_token_detokenizer",
)


class LoadedPipeline(NamedTuple):
    """What `load_pipeline` returns: the pipeline (on the CPU) and what it is."""

    pipe: AceStepPipeline
    info: CheckpointInfo


def converted_cache_dir(settings: Settings) -> Path:
    """Where conversions of original-layout checkpoints are kept: DATA_DIR/converted."""
    return settings.data_dir / "converted"


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """`torch.bfloat16` or its name (`EffectivePolicy.dtype` is a string)."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype {dtype!r} is not supported: allowed are {', '.join(DTYPES)}")


def _check_attention(attention: str, dtype: torch.dtype) -> None:
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention {attention!r} is not supported: allowed are {', '.join(ATTENTION_CHOICES)}")
    if attention == "flash_attention_2":
        if not flash_attention_installed():
            raise ValueError(
                "attention 'flash_attention_2' needs the flash-attn package, which is not "
                "installed: use 'sdpa' (ATTENTION_BACKEND=auto picks it)"
            )
        if dtype == torch.float32:
            raise ValueError("attention 'flash_attention_2' needs bfloat16 or float16, not float32")


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """`set_attention_backend` warns 'experimental' on every call; once is enough
    for the log, and this module states the choice itself."""
    from diffusers.utils import logging as diffusers_logging

    logger = diffusers_logging.get_logger("diffusers.models.modeling_utils")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def apply_attention(pipe: AceStepPipeline, attention: str) -> None:
    """Use `attention` ('sdpa' or 'flash_attention_2') in every attention layer:
    the diffusers modules through their attention backend, the transformers text
    encoder through its attention implementation."""
    _check_attention(attention, pipe.transformer.dtype)
    with _quiet_diffusers():
        for name in _ATTENTION_COMPONENTS:
            module = getattr(pipe, name, None)
            if module is not None:
                module.set_attention_backend(_DIFFUSERS_BACKENDS[attention])
    pipe.text_encoder.set_attn_implementation(attention)


def load_pipeline(
    checkpoint: CheckpointInfo | Path,
    *,
    dtype: torch.dtype | str,
    attention: str = "sdpa",
    cache_dir: Path,
    variant: str | None = None,
) -> LoadedPipeline:
    """Load a checkpoint (a `CheckpointInfo`, or a folder given to
    `inspect_checkpoint` with `variant`) as an `AceStepPipeline` on the CPU.

    An original-layout checkpoint is first converted into `cache_dir` (once).
    Raises `CheckpointError` for anything wrong with the files, `ValueError` for
    an unsupported `dtype` or `attention`.
    """
    from diffusers import AceStepPipeline

    info = checkpoint if isinstance(checkpoint, CheckpointInfo) else None
    if info is None:
        info = inspect_checkpoint(Path(checkpoint), variant)
    torch_dtype = resolve_dtype(dtype)
    _check_attention(attention, torch_dtype)
    folder = ensure_converted(info, cache_dir)
    log.info("Loading %s in %s", info.describe(), str(torch_dtype).removeprefix("torch."))
    try:
        pipe = AceStepPipeline.from_pretrained(folder, dtype=torch_dtype)
    except Exception as exc:  # diffusers/transformers/safetensors raise many kinds
        raise CheckpointError(
            f"Could not load the pipeline in {folder}: {type(exc).__name__}: {exc}. "
            f"A file may be damaged or incomplete. {HOW_TO_GET}"
        ) from exc
    if pipe.tokenizer.pad_token is None:
        raise CheckpointError(f"The tokenizer in {folder / 'tokenizer'} has no pad token.")
    apply_attention(pipe, attention)
    return LoadedPipeline(pipe, info)
