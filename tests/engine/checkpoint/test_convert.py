"""Original ACE-Step 1.5 layout -> diffusers: key mapping, checks, cache, CLI.

Uses the team's fixtures of the real checkpoint (tests/data, and the shared tiny
original-layout folder, copied before use, never edited) and the tiny checkpoints
of engine.checkpoint.tiny.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from diffusers import AceStepPipeline
from diffusers.models.transformers.ace_step_transformer import AceStepAttention
from safetensors.torch import load_file, save_file

from engine.checkpoint.convert import MARKER, convert_original, plan_conversion
from engine.checkpoint.find import CheckpointError, inspect_checkpoint
from engine.checkpoint.layout import component_configs, expected_shapes, to_diffusers_key, to_original_key
from engine.checkpoint.load import load_pipeline
from engine.checkpoint.tiny import NOTICE, tiny_dit_config
from engine.checkpoint.tokenizer import save_tiny_tokenizer
from engine.commands.cli import main
from engine.gpu.tiers import flash_attention_installed

#: Key listing and config of the real 2B turbo (copied from the team's shared
#: fixtures, ../shared/fixtures/acestep-v15-original, so CI always has them).
TESTS = Path(__file__).resolve().parents[2]
REAL_2B = TESTS / "data" / "acestep-v15-original"
#: The shared tiny original-layout checkpoint (2.3 MB of weights, not vendored).
SHARED_TINY = (
    Path(
        os.environ.get(
            "ACESTEP_FIXTURES",
            TESTS.parents[1] / "shared" / "fixtures" / "acestep-v15-original",
        )
    )
    / "tiny-checkpoints"
)
needs_shared_tiny = pytest.mark.skipif(
    not SHARED_TINY.is_dir(), reason=f"shared fixture {SHARED_TINY} is not on this machine"
)
TURBO = "acestep-v15-turbo"


def _writable_copy(src: Path, dst: Path) -> Path:
    """Copy a (read-only) fixture so a test may change its copy."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return dst


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    """The shared tiny original-layout fixture, plus the offline tokenizer it lacks."""
    copy = _writable_copy(SHARED_TINY, tmp_path / "checkpoints")
    save_tiny_tokenizer(copy / "Qwen3-Embedding-0.6B")
    return copy


@pytest.fixture
def original_copy(tiny_original_checkpoint_dir: Path, tmp_path: Path) -> Path:
    return _writable_copy(tiny_original_checkpoint_dir, tmp_path / "checkpoints")


# --------------------------------------------------------------------------- key mapping


def test_named_renames_match_the_diffusers_modules() -> None:
    cases = {
        "decoder.proj_in.1.weight": ("transformer", "proj_in_conv.weight"),
        "decoder.proj_out.1.bias": ("transformer", "proj_out_conv.bias"),
        "decoder.layers.3.self_attn.q_proj.weight": (
            "transformer",
            "layers.3.self_attn.to_q.weight",
        ),
        "decoder.layers.0.cross_attn.o_proj.weight": (
            "transformer",
            "layers.0.cross_attn.to_out.0.weight",
        ),
        "decoder.layers.0.cross_attn.k_norm.weight": (
            "transformer",
            "layers.0.cross_attn.norm_k.weight",
        ),
        "encoder.lyric_encoder.layers.1.self_attn.v_proj.weight": (
            "condition_encoder",
            "lyric_encoder.layers.1.self_attn.to_v.weight",
        ),
        "null_condition_emb": ("condition_encoder", "null_condition_emb"),
        "tokenizer.quantizer.project_in.weight": ("audio_tokenizer", "quantizer.project_in.weight"),
        # `proj_out` without `.1` is the detokenizer's own linear layer: left alone.
        "detokenizer.proj_out.weight": ("audio_token_detokenizer", "proj_out.weight"),
        "decoder.time_embed.time_proj.weight": ("transformer", "time_embed.time_proj.weight"),
    }
    for original, target in cases.items():
        assert to_diffusers_key(original) == target
        assert to_original_key(*target) == original
    assert to_diffusers_key("lm_head.weight") is None


def test_every_key_of_the_real_2b_turbo_maps_with_its_shape() -> None:
    config = json.loads((REAL_2B / "turbo-2b-config.json").read_text())
    shapes = json.loads((REAL_2B / "turbo-2b-state-dict-shapes.json").read_text())
    assert len(shapes) == 677
    plan = plan_conversion(config, shapes)  # raises on any unknown/missing/mismatched key

    assert set(plan.keys) == set(shapes)
    for component in plan.components:
        expected = expected_shapes(component, plan.configs[component])
        mapped = {new: old for old, (c, new) in plan.keys.items() if c == component}
        # Every parameter of the diffusers module is filled (the silence latent
        # comes from silence_latent.pt), each from a key of the same shape.
        assert set(mapped) | {"silence_latent"} >= set(expected)
        assert set(mapped) <= set(expected)
        for new, old in mapped.items():
            assert tuple(shapes[old]) == expected[new]
    for old, target in plan.keys.items():
        assert to_original_key(*target) == old
    assert plan.silence_shape == (1, 15000, 64)
    assert sum(math.prod(s) for s in shapes.values()) == 2_393_872_518


def test_2b_configs_carry_the_variant_and_sizes() -> None:
    config = json.loads((REAL_2B / "turbo-2b-config.json").read_text())
    configs = component_configs(config)
    transformer = configs["transformer"]
    assert transformer["is_turbo"] is True and transformer["model_version"] == "turbo"
    assert transformer["hidden_size"] == 2048 and transformer["num_hidden_layers"] == 24
    assert transformer["layer_types"] == config["layer_types"]
    assert configs["condition_encoder"]["text_hidden_dim"] == 1024
    assert configs["condition_encoder"]["layer_types"] == config["layer_types"][:8]
    assert configs["audio_tokenizer"]["fsq_input_levels"] == [8, 8, 8, 5, 5, 5]


def test_xl_condition_encoder_gets_its_own_sizes() -> None:
    config = {
        **tiny_dit_config("turbo"),
        "hidden_size": 96,
        "encoder_hidden_size": 64,
        "encoder_intermediate_size": 128,
        "encoder_num_attention_heads": 4,
        "encoder_num_key_value_heads": 2,
    }
    configs = component_configs(config)
    assert configs["transformer"]["encoder_hidden_size"] == 64
    assert configs["condition_encoder"]["hidden_size"] == 64
    assert configs["audio_tokenizer"]["hidden_size"] == 64
    # A checkpoint of that shape (built from the modules themselves) plans cleanly.
    shapes = {
        to_original_key(component, key): shape
        for component, kwargs in configs.items()
        for key, shape in expected_shapes(component, kwargs).items()
        if key != "silence_latent"
    }
    plan = plan_conversion(config, shapes)
    assert plan.keys["decoder.condition_embedder.weight"] == (
        "transformer",
        "condition_embedder.weight",
    )
    assert shapes["decoder.condition_embedder.weight"] == (96, 64)


def test_config_without_a_needed_size_is_named() -> None:
    config = tiny_dit_config("turbo")
    del config["text_hidden_dim"]
    with pytest.raises(CheckpointError, match=r"config\.json lacks text_hidden_dim"):
        component_configs(config)


# --------------------------------------------------------------------------- the shared fixture


@needs_shared_tiny
def test_shared_fixture_converts_and_loads_exactly(fixture_copy: Path, tmp_path: Path) -> None:
    pipe, info = load_pipeline(fixture_copy, dtype="float32", cache_dir=tmp_path / "cache")
    assert (info.layout, info.name, info.variant) == ("original", TURBO, "turbo")

    original = load_file(fixture_copy / TURBO / "model.safetensors")
    assert len(original) == 127
    for key, tensor in original.items():
        component, new = to_diffusers_key(key)
        assert torch.equal(getattr(pipe, component).state_dict()[new], tensor), key

    # [1, 64, 1000] on disk -> [1, 15000, 64] buffer, tiled as the pipeline tiles it.
    raw = torch.load(fixture_copy / TURBO / "silence_latent.pt", weights_only=True)
    buffer = pipe.condition_encoder.silence_latent
    assert raw.shape == (1, 64, 1000) and buffer.shape == (1, 15000, 64)
    assert torch.equal(buffer, raw.transpose(1, 2).repeat(1, 15, 1))

    for folder, component in (("vae", "vae"), ("Qwen3-Embedding-0.6B", "text_encoder")):
        files = sorted((fixture_copy / folder).glob("*.safetensors"))
        weights = {k: v for f in files for k, v in load_file(f).items()}
        state = getattr(pipe, component).state_dict()
        for key, tensor in weights.items():
            assert torch.equal(state[key], tensor), f"{component}.{key}"

    pipe.set_progress_bar_config(disable=True)
    audio = pipe(prompt="rain", audio_duration=10, num_inference_steps=2).audios
    assert audio.shape == (1, 2, 480_000)  # 10 s of 48 kHz stereo


@needs_shared_tiny
def test_fixture_without_tokenizer_files_says_so(tmp_path: Path) -> None:
    copy = _writable_copy(SHARED_TINY, tmp_path / "checkpoints")
    with pytest.raises(CheckpointError) as err:
        load_pipeline(copy, dtype="float32", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "no tokenizer files" in message and "tokenizer.json" in message
    assert str(copy / "Qwen3-Embedding-0.6B") in message
    assert "python -m engine download" in message
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (f"{TURBO}/model.safetensors", f"DiT weights of '{TURBO}'"),
        (f"{TURBO}/silence_latent.pt", "silence latent"),
        (f"{TURBO}/config.json", "DiT config"),
        ("vae", "VAE config"),
        ("vae/diffusion_pytorch_model.safetensors", "VAE weights"),
        ("Qwen3-Embedding-0.6B/model.safetensors", "text encoder weights"),
    ],
)
def test_missing_file_is_named_with_how_to_get_it(original_copy: Path, tmp_path: Path, remove: str, named: str) -> None:
    target = original_copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(CheckpointError) as err:
        load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert named in message
    assert str(target) in message
    assert "./setup.sh --models" in message


def _edit_dit(checkpoints: Path, edit) -> None:
    path = checkpoints / TURBO / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def test_unmapped_extra_key_is_named(original_copy: Path, tmp_path: Path) -> None:
    _edit_dit(original_copy, lambda t: t.update({"decoder.mystery.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"1 unknown key\(s\): decoder\.mystery\.weight"):
        load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*"))


def test_shape_mismatch_is_named(original_copy: Path, tmp_path: Path) -> None:
    key = "decoder.layers.0.self_attn.q_proj.weight"
    _edit_dit(original_copy, lambda t: t.update({key: torch.zeros(3, 5)}))
    with pytest.raises(CheckpointError) as err:
        load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")
    assert f"{key} is [3, 5] but the model needs [64, 64]" in str(err.value)
    assert "missing" not in str(err.value)


def test_missing_key_is_named(original_copy: Path, tmp_path: Path) -> None:
    _edit_dit(original_copy, lambda t: t.pop("encoder.text_projector.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): encoder\.text_projector"):
        load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")


def test_checkpoint_without_audio_tokenizer_converts_without_it(original_copy: Path, tmp_path: Path) -> None:
    def drop(tensors: dict) -> None:
        for key in [k for k in tensors if k.startswith(("tokenizer.", "detokenizer."))]:
            del tensors[key]

    _edit_dit(original_copy, drop)
    pipe, _ = load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")
    assert pipe.audio_tokenizer is None and pipe.audio_token_detokenizer is None
    assert pipe.transformer is not None


def test_silence_latent_with_wrong_channels_is_named(original_copy: Path, tmp_path: Path) -> None:
    torch.save(torch.zeros(1, 8, 100), original_copy / TURBO / "silence_latent.pt")
    with pytest.raises(CheckpointError, match=r"has 8 channels but .* needs 64"):
        load_pipeline(original_copy, dtype="float32", cache_dir=tmp_path / "cache")


def test_failed_conversion_leaves_nothing_behind(original_copy: Path, tmp_path: Path) -> None:
    # The tokenizer check runs after the DiT tensors are written: a late failure.
    config_path = original_copy / "Qwen3-Embedding-0.6B" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token")
    config_path.write_text(json.dumps(config))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="has no pad token"):
        load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------- cache


def test_conversion_is_cached_and_redone_when_sources_change(
    original_copy: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, logger="engine.checkpoint.convert")
    load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    (first,) = cache.iterdir()
    assert first.name.startswith(f"{TURBO}-") and (first / MARKER).is_file()
    weights = first / "transformer" / "diffusion_pytorch_model.safetensors"
    before = weights.stat().st_mtime_ns, weights.stat().st_ino
    assert sum("Converting" in r.message for r in caplog.records) == 1

    caplog.clear()
    load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    assert [r.message for r in caplog.records if "Converting" in r.message] == []
    assert list(cache.iterdir()) == [first]
    assert (weights.stat().st_mtime_ns, weights.stat().st_ino) == before

    # New sources (a re-download): converted again, the outdated copy removed.
    config = original_copy / TURBO / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    (second,) = cache.iterdir()
    assert second != first


def test_incomplete_cache_entry_is_rebuilt(original_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    (entry,) = cache.iterdir()
    (entry / MARKER).unlink()
    (entry / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    pipe, _ = load_pipeline(original_copy, dtype="float32", cache_dir=cache)
    assert (entry / MARKER).is_file() and pipe.transformer is not None


def test_unwritable_cache_is_a_checkpoint_error(original_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    with pytest.raises(CheckpointError, match=r"Could not write the converted checkpoint"):
        load_pipeline(original_copy, dtype="float32", cache_dir=cache)


# --------------------------------------------------------------------------- variants


def _add_variant(checkpoints: Path, name: str, variant: str) -> None:
    shutil.copytree(checkpoints / TURBO, checkpoints / name)
    (checkpoints / name / "config.json").write_text(json.dumps(tiny_dit_config(variant)))


def test_variant_choice_in_a_checkpoints_folder(original_copy: Path) -> None:
    _add_variant(original_copy, "acestep-v15-base", "base")
    _add_variant(original_copy, "acestep-v15-sft", "sft")
    assert inspect_checkpoint(original_copy).name == TURBO
    base = inspect_checkpoint(original_copy, "base")
    assert (base.name, base.variant, base.is_turbo) == ("acestep-v15-base", "base", False)
    assert inspect_checkpoint(original_copy, "sft").variant == "sft"
    with pytest.raises(CheckpointError, match=r"No 'xl-sft' model .* available are base, sft, turbo"):
        inspect_checkpoint(original_copy, "xl-sft")
    shutil.rmtree(original_copy / TURBO)
    with pytest.raises(CheckpointError, match=r"several models \(base, sft\) and no turbo"):
        inspect_checkpoint(original_copy)


def test_base_variant_runs_with_guidance(tmp_path: Path) -> None:
    assert main(["tiny-checkpoint", str(tmp_path / "base"), "--variant", "base"]) == 0
    pipe, info = load_pipeline(tmp_path / "base", dtype="float32", cache_dir=tmp_path / "c")
    assert (info.variant, info.is_turbo, pipe.is_turbo) == ("base", False, False)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="x",
        audio_duration=4,
        num_inference_steps=2,
        guidance_scale=7.0,
        output_type="latent",
    )
    assert pipe.do_classifier_free_guidance and out.audios.shape == (1, 100, 64)


# --------------------------------------------------------------------------- attention


def test_sdpa_is_set_on_every_attention_layer(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    pipe, _ = load_pipeline(tiny_checkpoint_dir, dtype="float32", cache_dir=tmp_path)
    for name in ("transformer", "condition_encoder", "audio_tokenizer", "audio_token_detokenizer"):
        layers = [m for m in getattr(pipe, name).modules() if isinstance(m, AceStepAttention)]
        assert layers and all(m.processor._attention_backend == "native" for m in layers)
    assert pipe.text_encoder.config._attn_implementation == "sdpa"


@pytest.mark.skipif(flash_attention_installed(), reason="flash-attn is installed here")
def test_flash_attention_without_flash_attn_is_refused(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs the flash-attn package"):
        load_pipeline(
            tiny_checkpoint_dir,
            dtype="bfloat16",
            attention="flash_attention_2",
            cache_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="allowed are sdpa, flash_attention_2"):
        load_pipeline(tiny_checkpoint_dir, dtype="float32", attention="eager", cache_dir=tmp_path)


# --------------------------------------------------------------------------- CLI


def test_cli_convert_writes_a_folder_stock_diffusers_loads(
    env_file: Path, original_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "converted"
    assert main(["convert", str(original_copy), str(dst)]) == 0
    assert "converted to the diffusers layout" in capsys.readouterr().out
    pipe = AceStepPipeline.from_pretrained(dst)
    assert pipe.is_turbo and pipe.audio_tokenizer is not None
    assert main(["convert", str(original_copy), str(dst)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_cli_tiny_checkpoint_prints_the_notice(
    env_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "tiny"
    assert main(["tiny-checkpoint", str(dst), "--layout", "original"]) == 0
    out = capsys.readouterr().out
    assert NOTICE in out and "noise, not music" in out
    assert inspect_checkpoint(dst).layout == "original"
    assert main(["tiny-checkpoint", str(dst)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_convert_refuses_an_existing_destination(original_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "dst").mkdir()
    with pytest.raises(CheckpointError, match="already exists"):
        convert_original(original_copy, TURBO, tmp_path / "dst")
