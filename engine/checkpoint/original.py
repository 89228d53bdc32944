"""Reading an original-layout ACE-Step 1.5 checkpoint without loading it.

Tensor shapes from the safetensors headers, the silence latent, and which
transformers classes its tokenizer and text encoder are: what the converter
(engine.checkpoint.convert) plans and writes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from engine.checkpoint.find import read_json
from engine.errors import CheckpointError


def weight_files(dit: Path) -> list[Path]:
    single = dit / "model.safetensors"
    if single.is_file():
        return [single]
    index = read_json(dit / "model.safetensors.index.json")
    return [dit / name for name in sorted(set(index["weight_map"].values()))]


def read_shapes(files: Iterable[Path]) -> dict[str, tuple[tuple[int, ...], Path]]:
    """key -> (shape, file) from safetensors headers, reading no tensor data."""
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                    found[key] = (tuple(handle.get_slice(key).get_shape()), path)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({exc}). It may be a partial "
                "download: run 'python -m engine download' again."
            ) from None
    return found


def load_silence_latent(path: Path, shape: Sequence[int]) -> torch.Tensor:
    """`silence_latent.pt` ([1, C, T]) as the condition encoder's buffer ([1, T', C]).

    diffusers' buffer has a fixed length (15000 frames = 600 s); a file with
    another T is tiled or cut to it, exactly as the pipeline itself tiles the
    silence when a song is longer than the buffer.
    """
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike
        raise CheckpointError(f"{path} cannot be read as a tensor ({exc})") from None
    if not isinstance(raw, torch.Tensor) or raw.ndim != 3 or raw.shape[0] != 1:
        got = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
        raise CheckpointError(f"{path} should hold a [1, channels, frames] tensor, got {got}")
    length, channels = shape[1], shape[2]
    if raw.shape[1] != channels:
        raise CheckpointError(
            f"{path} has {raw.shape[1]} channels but the condition encoder's timbre input needs {channels}"
        )
    latent = raw.transpose(1, 2)
    if latent.shape[1] != length:
        repeats = -(-length // latent.shape[1])
        latent = latent.repeat(1, repeats, 1)[:, :length]
    return latent.contiguous()


def tokenizer_class(folder: Path) -> str:
    import transformers
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # transformers raises many kinds
        raise CheckpointError(f"The tokenizer in {folder} cannot be loaded: {exc}") from None
    if tokenizer.pad_token is None:
        raise CheckpointError(
            f"The tokenizer in {folder} has no pad token; the pipeline pads batches of "
            "prompts. Re-download Qwen3-Embedding-0.6B ('python -m engine download')."
        )
    name = type(tokenizer).__name__
    return name if hasattr(transformers, name) else "PreTrainedTokenizerFast"


def text_encoder_class(folder: Path) -> str:
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    config = read_json(folder / "config.json")
    name = MODEL_MAPPING_NAMES.get(str(config.get("model_type")))
    if name is None or not hasattr(transformers, name):
        raise CheckpointError(
            f"{folder / 'config.json'}: model_type {config.get('model_type')!r} is not a "
            "text encoder transformers knows; expected 'qwen3' (Qwen3-Embedding-0.6B)"
        )
    return name
