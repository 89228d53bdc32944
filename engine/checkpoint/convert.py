"""Convert an original ACE-Step 1.5 checkpoint to the diffusers pipeline layout.

The original DiT file (`acestep-v15-*/model.safetensors`) holds four modules
under prefixes; diffusers keeps them as separate pipeline components:

    decoder.*            -> transformer              (AceStepTransformer1DModel)
    encoder.*            -> condition_encoder        (AceStepConditionEncoder)
    null_condition_emb   -> condition_encoder.null_condition_emb
    tokenizer.*          -> audio_tokenizer          (AceStepAudioTokenizer)
    detokenizer.*        -> audio_token_detokenizer  (AceStepAudioTokenDetokenizer)
    silence_latent.pt    -> condition_encoder.silence_latent ([1, 64, T] -> [1, T, 64])

and renames a few parameters (checked against the diffusers modules' own
`state_dict`, see tests/engine/checkpoint/test_convert.py):

    <self_attn|cross_attn>.q_proj/k_proj/v_proj/o_proj -> .to_q/.to_k/.to_v/.to_out.0
    <self_attn|cross_attn>.q_norm/k_norm               -> .norm_q/.norm_k
    decoder.proj_in.1 / decoder.proj_out.1             -> proj_in_conv / proj_out_conv
        (the original wraps each conv in an nn.Sequential whose other members have
        no parameters)

Every key must land on a parameter of the module built from the checkpoint's
`config.json` with the same shape, and every parameter must be filled:
anything else stops the conversion with a `CheckpointError` naming the keys.
The audio tokenizer pair is only needed for audio-code (cover) tasks: a
checkpoint without any `tokenizer.*`/`detokenizer.*` key converts without them.

The VAE and the text encoder are already in diffusers/transformers form and are
hard-linked (or copied, across file systems) into the new folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.checkpoint.find import (
    TEXT_ENCODER_FOLDER,
    TOKENIZER_FILE_SETS,
    VAE_FOLDER,
    CheckpointError,
    CheckpointInfo,
    check_original,
    read_json,
)
from engine.checkpoint.layout import (
    AUDIO_PAIR,
    COMPONENTS,
    CONDITION_ENCODER,
    SILENCE_KEY,
    TRANSFORMER,
    component_classes,
    component_configs,
    expected_shapes,
    to_diffusers_key,
    to_original_key,
)
from engine.checkpoint.original import (
    load_silence_latent,
    read_shapes,
    text_encoder_class,
    tokenizer_class,
    weight_files,
)

log = logging.getLogger(__name__)

#: Bump when the converter's output changes, so cached conversions are redone.
CONVERTER_VERSION = 1
MARKER = ".conversion.json"


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ConversionPlan:
    """Where each original key goes; built from shapes only, so it can be checked
    against a checkpoint's listing without reading any tensor."""

    configs: dict[str, dict[str, Any]]
    keys: dict[str, tuple[str, str]]
    components: tuple[str, ...]
    silence_shape: tuple[int, ...]


def _listing(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def plan_conversion(
    config: Mapping[str, Any],
    shapes: Mapping[str, Sequence[int]],
    source: str = "model.safetensors",
) -> ConversionPlan:
    """Map every key of an original checkpoint (given as key -> shape) onto the
    diffusers components built from `config`, or raise `CheckpointError` naming
    every unknown key, missing parameter and shape mismatch."""
    configs = component_configs(config)
    has_audio_pair = any(k.startswith(("tokenizer.", "detokenizer.")) for k in shapes)
    components = COMPONENTS if has_audio_pair else (TRANSFORMER, CONDITION_ENCODER)
    expected = {c: expected_shapes(c, configs[c]) for c in components}

    keys: dict[str, tuple[str, str]] = {}
    unknown: list[str] = []
    mismatched: list[str] = []
    filled: set[tuple[str, str]] = set()
    for key in sorted(shapes):
        target = to_diffusers_key(key)
        if target is None or target[0] not in expected or target[1] not in expected[target[0]]:
            unknown.append(key)
            continue
        want = expected[target[0]][target[1]]
        filled.add(target)
        if tuple(shapes[key]) != want:
            mismatched.append(f"{key} is {list(shapes[key])} but the model needs {list(want)}")
            continue
        keys[key] = target
    filled.add((CONDITION_ENCODER, SILENCE_KEY))  # comes from silence_latent.pt
    missing = sorted(to_original_key(c, k) for c in components for k in expected[c] if (c, k) not in filled)

    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {_listing(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, 6)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the ACE-Step 1.5 architecture its config.json "
            f"describes: {'; '.join(problems)}. Re-download the checkpoint "
            "('python -m engine download'); a fine-tune with other keys is not supported."
        )
    silence = expected[CONDITION_ENCODER][SILENCE_KEY]
    return ConversionPlan(configs, keys, components, silence)


# --------------------------------------------------------------------------- writing


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (no extra disk space), or copy where links are not possible."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _write_component(out: Path, component: str, kwargs: Mapping[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    import diffusers

    folder = out / component
    folder.mkdir(parents=True)
    config = {
        "_class_name": component_classes()[component].__name__,
        "_diffusers_version": diffusers.__version__,
        **kwargs,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(folder / "diffusion_pytorch_model.safetensors"), {"format": "pt"})


def _model_index(components: Sequence[str], text_encoder: str, tokenizer: str) -> dict[str, Any]:
    """What `AceStepPipeline.save_pretrained` writes (pipeline-local classes are
    listed under the pipeline module, `ace_step`)."""
    import diffusers

    classes = component_classes()
    index: dict[str, Any] = {
        "_class_name": "AceStepPipeline",
        "_diffusers_version": diffusers.__version__,
        "transformer": ["diffusers", classes[TRANSFORMER].__name__],
        "vae": ["diffusers", "AutoencoderOobleck"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", text_encoder],
        "tokenizer": ["transformers", tokenizer],
    }
    for component in (CONDITION_ENCODER, *AUDIO_PAIR):
        present = component in components
        index[component] = ["ace_step", classes[component].__name__] if present else [None, None]
    return index


def _write_tensors(out: Path, plan: ConversionPlan, dit: Path, files: list[Path]) -> None:
    """One component at a time, so peak memory is the largest component."""
    silence = load_silence_latent(dit / "silence_latent.pt", plan.silence_shape)
    handles = {}
    with contextlib.ExitStack() as stack:
        for path in files:
            handles[path] = stack.enter_context(safe_open(str(path), framework="pt"))
        where = {key: path for path, h in handles.items() for key in h.keys()}  # noqa: SIM118
        for component in plan.components:
            tensors = {
                new: handles[where[old]].get_tensor(old) for old, (c, new) in plan.keys.items() if c == component
            }
            if component == CONDITION_ENCODER:
                tensors[SILENCE_KEY] = silence.to(tensors["null_condition_emb"].dtype)
            _write_component(out, component, plan.configs[component], tensors)
            del tensors


def _write_shared_parts(out: Path, checkpoints: Path) -> tuple[str, str]:
    """VAE, text encoder, tokenizer, scheduler; returns the transformers class names."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    text = checkpoints / TEXT_ENCODER_FOLDER
    tokenizer_name = tokenizer_class(text)
    text_class = text_encoder_class(text)
    tokenizer_names = {name for files in TOKENIZER_FILE_SETS for name in files} | {
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
    }
    for path in _visible_files(checkpoints / VAE_FOLDER):
        _link_or_copy(path, out / "vae" / path.name)
    for path in _visible_files(text):
        folder = "tokenizer" if path.name in tokenizer_names else "text_encoder"
        _link_or_copy(path, out / folder / path.name)
    # ACE-Step computes its own shifted sigmas in [0, 1] and hands them to the
    # scheduler: one training timestep and no extra shift.
    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0).save_pretrained(out / "scheduler")
    return text_class, tokenizer_name


def source_fingerprint(checkpoints: Path, name: str) -> str:
    """A short hash of the converter version and the name, size and modification
    time of every source file: any change to the sources makes a new cache entry."""
    digest = hashlib.sha256(f"converter-{CONVERTER_VERSION}".encode())
    for folder in (name, VAE_FOLDER, TEXT_ENCODER_FOLDER):
        for path in _visible_files(checkpoints / folder):
            stat = path.stat()
            digest.update(f"{folder}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def convert_original(checkpoints: Path, name: str, dst: Path) -> Path:
    """Write the diffusers layout of `checkpoints/name` (with the shared `vae/` and
    text encoder) into `dst`, which must not exist yet.

    The folder is built under a temporary name next to `dst` and renamed into
    place only when complete, so an interrupted conversion leaves nothing half
    written behind at `dst`.
    """
    check_original(checkpoints, name)
    if dst.exists():
        raise CheckpointError(f"{dst} already exists: choose a new folder or remove it")
    dit = checkpoints / name
    config = read_json(dit / "config.json")
    files = weight_files(dit)
    listing = read_shapes(files)
    try:
        plan = plan_conversion(config, {k: s for k, (s, _) in listing.items()}, str(dit))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (config: {dit / 'config.json'})") from None

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        log.info("Converting %s to the diffusers layout in %s", dit, dst)
        _write_tensors(tmp, plan, dit, files)
        text_class, tokenizer_class = _write_shared_parts(tmp, checkpoints)
        index = _model_index(plan.components, text_class, tokenizer_class)
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        marker = {
            "source": str(dit),
            "fingerprint": source_fingerprint(checkpoints, name),
            "converter": CONVERTER_VERSION,
            "components": list(plan.components),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        os.rename(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _is_complete(folder: Path, fingerprint: str) -> bool:
    try:
        return json.loads((folder / MARKER).read_text())["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_converted(info: CheckpointInfo, cache_dir: Path) -> Path:
    """The diffusers-layout copy of an original checkpoint in `cache_dir`, made on
    first use (`<name>-<fingerprint>/`) and reused while the sources are unchanged.
    Older conversions of the same model are removed once a new one is complete."""
    if info.layout != "original":
        return info.path
    fingerprint = source_fingerprint(info.path, info.name)
    target = cache_dir / f"{info.name}-{fingerprint}"
    if _is_complete(target, fingerprint):
        log.info("Using the converted checkpoint in %s", target)
        return target
    if target.exists():
        shutil.rmtree(target)  # left by something else than this converter: redo it
    try:
        convert_original(info.path, info.name, target)
    except (OSError, CheckpointError) as exc:
        # Another process may have finished the same conversion first: use it.
        if _is_complete(target, fingerprint):
            return target
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"Could not write the converted checkpoint to {target}: {exc}. The folder "
            f"(DATA_DIR/converted) needs about as much free space as {info.dit_dir}."
        ) from exc
    own = re.compile(re.escape(info.name) + r"-[0-9a-f]{16}")
    for stale in cache_dir.iterdir():
        if stale != target and own.fullmatch(stale.name) and (stale / MARKER).is_file():
            log.info("Removing an outdated conversion: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
    return target
