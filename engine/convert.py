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
`state_dict`, see tests/test_convert.py):

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.checkpoints import (
    TEXT_ENCODER_FOLDER,
    TOKENIZER_FILE_SETS,
    VAE_FOLDER,
    CheckpointError,
    CheckpointInfo,
    check_original,
)

log = logging.getLogger(__name__)

#: Bump when the converter's output changes, so cached conversions are redone.
CONVERTER_VERSION = 1
MARKER = ".conversion.json"

TRANSFORMER = "transformer"
CONDITION_ENCODER = "condition_encoder"
AUDIO_TOKENIZER = "audio_tokenizer"
AUDIO_DETOKENIZER = "audio_token_detokenizer"
AUDIO_PAIR = (AUDIO_TOKENIZER, AUDIO_DETOKENIZER)
COMPONENTS = (TRANSFORMER, CONDITION_ENCODER, AUDIO_TOKENIZER, AUDIO_DETOKENIZER)

#: Original key prefix -> diffusers component.
PREFIXES = {
    "decoder.": TRANSFORMER,
    "encoder.": CONDITION_ENCODER,
    "tokenizer.": AUDIO_TOKENIZER,
    "detokenizer.": AUDIO_DETOKENIZER,
}
#: Original top-level keys -> (component, key).
TOP_LEVEL = {"null_condition_emb": (CONDITION_ENCODER, "null_condition_emb")}
SILENCE_KEY = "silence_latent"

ATTENTION_RENAMES = {
    "q_proj": "to_q",
    "k_proj": "to_k",
    "v_proj": "to_v",
    "o_proj": "to_out.0",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
TRANSFORMER_RENAMES = {"proj_in.1": "proj_in_conv", "proj_out.1": "proj_out_conv"}

_ATTENTION_MODULES = r"(?:^|(?<=\.))(?:self_attn|cross_attn)\."


def _rename(key: str, renames: Mapping[str, str], context: str) -> str:
    """Rename the whole dotted segment(s) `old` that follow `context` in `key`."""
    for old, new in renames.items():
        pattern = re.compile(f"({context})" + re.escape(old) + r"(?=\.)")
        key = pattern.sub(lambda m, new=new: m.group(1) + new, key)
    return key


def to_diffusers_key(key: str) -> tuple[str, str] | None:
    """(component, key) for an original key, or None if no rule covers it."""
    if key in TOP_LEVEL:
        return TOP_LEVEL[key]
    for prefix, component in PREFIXES.items():
        if key.startswith(prefix):
            new = _rename(key[len(prefix) :], ATTENTION_RENAMES, _ATTENTION_MODULES)
            if component == TRANSFORMER:
                new = _rename(new, TRANSFORMER_RENAMES, "^")
            return component, new
    return None


def to_original_key(component: str, key: str) -> str:
    """The inverse of `to_diffusers_key` (used to write the original layout)."""
    for original, target in TOP_LEVEL.items():
        if target == (component, key):
            return original
    prefix = {c: p for p, c in PREFIXES.items()}[component]
    inverse_attention = {new: old for old, new in ATTENTION_RENAMES.items()}
    key = _rename(key, inverse_attention, _ATTENTION_MODULES)
    if component == TRANSFORMER:
        key = _rename(key, {new: old for old, new in TRANSFORMER_RENAMES.items()}, "^")
    return prefix + key


# --------------------------------------------------------------------------- configs

_REQUIRED_CONFIG = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "in_channels",
    "audio_acoustic_hidden_dim",
    "patch_size",
    "rope_theta",
    "rms_norm_eps",
    "sliding_window",
    "text_hidden_dim",
    "timbre_hidden_dim",
    "num_lyric_encoder_hidden_layers",
    "num_timbre_encoder_hidden_layers",
)


def component_configs(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The diffusers constructor arguments of each DiT component, from an original
    `config.json`. XL checkpoints give their narrower condition encoder its own
    `encoder_*` sizes; the others use the DiT's."""
    missing = [k for k in _REQUIRED_CONFIG if k not in config]
    if missing:
        raise CheckpointError(f"config.json lacks {', '.join(missing)}")
    if config.get("use_sliding_window") is False:
        raise CheckpointError(
            "config.json sets use_sliding_window=false, which diffusers' ACE-Step modules "
            "do not support: allowed is true (as in every released ACE-Step 1.5 model)"
        )
    layer_types = config.get("layer_types")
    enc_hidden = config.get("encoder_hidden_size", config["hidden_size"])
    enc_intermediate = config.get("encoder_intermediate_size", config["intermediate_size"])
    enc_heads = config.get("encoder_num_attention_heads", config["num_attention_heads"])
    enc_kv_heads = config.get("encoder_num_key_value_heads", config["num_key_value_heads"])
    pooler_layers = config.get("num_attention_pooler_hidden_layers", 2)

    def prefix(count: int) -> list[str] | None:
        # Upstream's encoder stacks take the first `count` entries of `layer_types`.
        if layer_types is None:
            return None
        if len(layer_types) < count:
            raise CheckpointError(f"config.json: layer_types has fewer than {count} entries")
        return list(layer_types[:count])

    attention = {
        "head_dim": config["head_dim"],
        "rope_theta": config["rope_theta"],
        "attention_bias": config.get("attention_bias", False),
        "attention_dropout": config.get("attention_dropout", 0.0),
        "rms_norm_eps": config["rms_norm_eps"],
        "sliding_window": config["sliding_window"],
    }
    encoder_sizes = {
        "hidden_size": enc_hidden,
        "intermediate_size": enc_intermediate,
        "num_attention_heads": enc_heads,
        "num_key_value_heads": enc_kv_heads,
    }
    pooler = {
        **encoder_sizes,
        **attention,
        "audio_acoustic_hidden_dim": config["audio_acoustic_hidden_dim"],
        "pool_window_size": config.get("pool_window_size", 5),
        "num_attention_pooler_hidden_layers": pooler_layers,
        "layer_types": prefix(pooler_layers),
    }
    return {
        TRANSFORMER: {
            "hidden_size": config["hidden_size"],
            "intermediate_size": config["intermediate_size"],
            "num_hidden_layers": config["num_hidden_layers"],
            "num_attention_heads": config["num_attention_heads"],
            "num_key_value_heads": config["num_key_value_heads"],
            "in_channels": config["in_channels"],
            "audio_acoustic_hidden_dim": config["audio_acoustic_hidden_dim"],
            "patch_size": config["patch_size"],
            "layer_types": prefix(config["num_hidden_layers"]),
            "encoder_hidden_size": enc_hidden,
            "is_turbo": bool(config.get("is_turbo", False)),
            "model_version": config.get("model_version"),
            **attention,
        },
        CONDITION_ENCODER: {
            **encoder_sizes,
            **attention,
            "text_hidden_dim": config["text_hidden_dim"],
            "timbre_hidden_dim": config["timbre_hidden_dim"],
            "num_lyric_encoder_hidden_layers": config["num_lyric_encoder_hidden_layers"],
            "num_timbre_encoder_hidden_layers": config["num_timbre_encoder_hidden_layers"],
            "layer_types": prefix(config["num_lyric_encoder_hidden_layers"]),
        },
        AUDIO_TOKENIZER: {
            **pooler,
            "fsq_dim": config.get("fsq_dim", enc_hidden),
            "fsq_input_levels": list(config.get("fsq_input_levels", [8, 8, 8, 5, 5, 5])),
            "fsq_input_num_quantizers": config.get("fsq_input_num_quantizers", 1),
        },
        AUDIO_DETOKENIZER: pooler,
    }


def component_classes() -> dict[str, type]:
    from diffusers import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
    )

    return {
        TRANSFORMER: AceStepTransformer1DModel,
        CONDITION_ENCODER: AceStepConditionEncoder,
        AUDIO_TOKENIZER: AceStepAudioTokenizer,
        AUDIO_DETOKENIZER: AceStepAudioTokenDetokenizer,
    }


def expected_shapes(component: str, kwargs: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every state-dict key and shape of the diffusers module, built on the meta
    device (no memory, even for the 2B model)."""
    with torch.device("meta"):
        module = component_classes()[component](**kwargs)
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


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
    missing = sorted(
        to_original_key(c, k) for c in components for k in expected[c] if (c, k) not in filled
    )

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


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON: {exc}") from None


def _weight_files(dit: Path) -> list[Path]:
    single = dit / "model.safetensors"
    if single.is_file():
        return [single]
    index = _read_json(dit / "model.safetensors.index.json")
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
            f"{path} has {raw.shape[1]} channels but the condition encoder's timbre input "
            f"needs {channels}"
        )
    latent = raw.transpose(1, 2)
    if latent.shape[1] != length:
        repeats = -(-length // latent.shape[1])
        latent = latent.repeat(1, repeats, 1)[:, :length]
    return latent.contiguous()


def _tokenizer_class(folder: Path) -> str:
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


def _text_encoder_class(folder: Path) -> str:
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    config = _read_json(folder / "config.json")
    name = MODEL_MAPPING_NAMES.get(str(config.get("model_type")))
    if name is None or not hasattr(transformers, name):
        raise CheckpointError(
            f"{folder / 'config.json'}: model_type {config.get('model_type')!r} is not a "
            "text encoder transformers knows; expected 'qwen3' (Qwen3-Embedding-0.6B)"
        )
    return name


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


def _write_component(
    out: Path, component: str, kwargs: Mapping[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
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
                new: handles[where[old]].get_tensor(old)
                for old, (c, new) in plan.keys.items()
                if c == component
            }
            if component == CONDITION_ENCODER:
                tensors[SILENCE_KEY] = silence.to(tensors["null_condition_emb"].dtype)
            _write_component(out, component, plan.configs[component], tensors)
            del tensors


def _write_shared_parts(out: Path, checkpoints: Path) -> tuple[str, str]:
    """VAE, text encoder, tokenizer, scheduler; returns the transformers class names."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    text = checkpoints / TEXT_ENCODER_FOLDER
    tokenizer_class = _tokenizer_class(text)
    text_class = _text_encoder_class(text)
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
    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0).save_pretrained(
        out / "scheduler"
    )
    return text_class, tokenizer_class


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
    config = _read_json(dit / "config.json")
    files = _weight_files(dit)
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
