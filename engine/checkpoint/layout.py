"""The two layouts of ACE-Step 1.5's DiT, key by key: original names <-> diffusers.

Which component each original key belongs to (by prefix), the parameter renames
between the two layouts, each component's diffusers constructor arguments from an
original `config.json`, and the shapes a component built from them has. Used by
the converter (engine.checkpoint.convert), the trainer's original-naming exports
and the full-size benchmark model. See engine.checkpoint.convert for the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from engine.errors import CheckpointError

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
