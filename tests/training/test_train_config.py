"""Settings of the trainer: seeds/003's flags and defaults, docs that match
`--help`, clear errors, presets, schedules, target modules, device rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.settings import PROJECT_ROOT
from training.cli import parse
from training.config import ConfigError, TrainConfig
from training.options import OPTIONS, options_for
from training.presets import list_presets, load_preset, save_preset

DOCS = PROJECT_ROOT / "docs" / "training.md"


def test_defaults_are_the_seed_reference(tmp_path: Path) -> None:
    _, config = parse(["fixed", "--checkpoint-dir", str(tmp_path)])
    expected = {
        "model_variant": "turbo",
        "device": "auto",
        "precision": "auto",
        "rank": 64,
        "alpha": 128.0,
        "dropout": 0.1,
        "attention_type": "both",
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none",
        "lr": 1e-4,
        "batch_size": 1,
        "gradient_accumulation": 4,
        "epochs": 100,
        "warmup_steps": 100,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "seed": 42,
        "optimizer_type": "adamw",
        "scheduler_type": "cosine",
        "offload_encoder": False,
        "cfg_ratio": 0.15,
        "num_workers": 4,
        "pin_memory": True,
        "prefetch_factor": 2,
        "persistent_workers": True,
        "save_every": 10,
        "resume_from": None,
        "log_every": 10,
        "log_heavy_every": 50,
        "sample_every_n_epochs": 0,
        "preprocess": False,
        "max_duration": 240.0,
        "mode": "fixed",
    }
    assert {k: getattr(config, k) for k in expected} == expected
    assert parse(["vanilla", "--checkpoint-dir", str(tmp_path)])[1].mode == "vanilla"
    _, short = parse(["fixed", "-r", "8", "--learning-rate", "0.5", "--no-pin-memory"])
    assert (short.rank, short.lr, short.pin_memory) == (8, 0.5, False)


def _doc_rows() -> dict[str, str]:
    """Flag -> its reference-table row in docs/training.md."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        if line.startswith("| `-"):
            for flag in re.findall(r"`(--?[a-z][a-z0-9-]*)`", line.split("|")[1]):
                rows[flag] = line
    return rows


def test_docs_list_every_flag_with_its_default_and_commands() -> None:
    rows = _doc_rows()
    for option in OPTIONS:
        for flag in option.flags:
            assert flag in rows, f"{flag} is not in docs/training.md"
        row = rows[option.flags[0]]
        assert f"`{option.shown_default()}`" in row, f"{option.flags[0]}: default not in {row}"
        for command in option.commands:
            assert command in row.split("|")[3], f"{option.flags[0]}: {command} not listed"
    parser_flags = {flag for o in OPTIONS for flag in o.flags} | {"--plain", "--yes", "--preset"}
    parser_flags |= {f"--no-{o.flags[0][2:]}" for o in OPTIONS if o.kind == "switch"}
    assert set(rows) - {"-y"} <= parser_flags, "docs list flags the parser does not have"


def test_help_shows_every_option_of_each_command() -> None:
    for command in ("fixed", "vanilla", "estimate"):
        out = subprocess.run(
            [sys.executable, "train.py", command, "--help"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        for option in options_for(command):
            assert option.flags[0] in out.stdout
        assert ("--cfg-ratio" in out.stdout) == (command == "fixed")


def test_bad_values_name_the_flag_and_what_is_allowed(tmp_path: Path) -> None:
    config = TrainConfig(
        checkpoint_dir=tmp_path / "missing",
        dataset_dir=tmp_path,
        output_dir=tmp_path / "out",
        rank=0,
        dropout=0.9,
        optimizer_type="sgd",
        device="tpu",
        attention_type="all",
        lr=-1,
    )
    with pytest.raises(ConfigError) as caught:
        config.check("fixed")
    text = "\n".join(caught.value.lines)
    assert "--checkpoint-dir" in text and "no such folder" in text
    assert "--rank 0 is not allowed: use an integer from 1 to 1024" in text
    assert "--dropout 0.9 is not allowed: use a number from 0 to 0.5" in text
    assert "--optimizer-type 'sgd' is not allowed: use one of adamw, adamw8bit, adafactor" in text
    assert "--device 'tpu' is not allowed" in text
    assert "--attention-type 'all' is not allowed: use one of both, self, cross" in text
    assert "--lr -1 is not allowed" in text
    with pytest.raises(ConfigError, match="--output-dir is required"):
        TrainConfig(checkpoint_dir=tmp_path, dataset_dir=tmp_path).check("vanilla")


def test_cli_reports_bad_settings_with_status_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--yes",
            "fixed",
            "--checkpoint-dir",
            str(tmp_path),
            "--dataset-dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "o"),
            "--rank",
            "0",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "error: --rank 0 is not allowed" in out.stderr


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = TrainConfig(checkpoint_dir=tmp_path, rank=8, target_modules=["to_q"], max_steps=5)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"rnak": 3})


def test_presets_ship_the_vram_profiles_and_flags_win(tmp_path: Path) -> None:
    shipped = list_presets(tmp_path)
    assert {"comfortable", "standard", "tight", "minimal"} <= set(shipped)
    minimal = load_preset("minimal", tmp_path)
    assert (minimal["rank"], minimal["optimizer_type"], minimal["offload_encoder"]) == (
        16,
        "adamw8bit",
        True,
    )
    # The LoKR size shrinks with the LoRA rank, profile by profile.
    for name in ("comfortable", "standard", "tight", "minimal"):
        preset = load_preset(name, tmp_path)
        assert preset["lokr_linear_dim"] == preset["rank"]
        assert preset["lokr_linear_alpha"] == preset["alpha"]
    _, config = parse(["fixed", "--preset", "minimal", "--rank", "8"])
    assert (config.rank, config.optimizer_type, config.gradient_accumulation) == (8, "adamw8bit", 8)
    with pytest.raises(ConfigError, match="no preset named 'nope': available are"):
        load_preset("nope", tmp_path)


def test_saved_presets_hold_hyperparameters_only(tmp_path: Path) -> None:
    config = TrainConfig(checkpoint_dir=tmp_path, output_dir=tmp_path, rank=12, lr=3e-4)
    path = save_preset("mine", config, tmp_path, "twelve")
    data = json.loads(path.read_text())
    assert data["rank"] == 12 and data["description"] == "twelve"
    assert "checkpoint_dir" not in data and "output_dir" not in data
    assert load_preset("mine", tmp_path)["lr"] == 3e-4
    assert list_presets(tmp_path)["mine"] == "twelve"
    with pytest.raises(ConfigError, match="shipped preset"):
        save_preset("tight", config, tmp_path)
    with pytest.raises(ConfigError, match="not allowed"):
        save_preset("../x", config, tmp_path)


def test_schedules_warm_up_from_ten_percent() -> None:
    from training.optim import lr_factor

    assert lr_factor(0, kind="cosine", warmup=10, total=110) == pytest.approx(0.1)
    assert lr_factor(5, kind="cosine", warmup=10, total=110) == pytest.approx(0.55)
    assert lr_factor(10, kind="cosine", warmup=10, total=110) == pytest.approx(1.0)
    assert lr_factor(60, kind="cosine", warmup=10, total=110) == pytest.approx(0.5)
    assert lr_factor(110, kind="cosine", warmup=10, total=110) == pytest.approx(0.0)
    assert lr_factor(60, kind="linear", warmup=10, total=110) == pytest.approx(0.5)
    assert lr_factor(60, kind="constant_with_warmup", warmup=10, total=110) == 1.0
    assert lr_factor(0, kind="constant", warmup=10, total=110) == 1.0
    assert TrainConfig(optimizer_type="prodigy").effective_scheduler == "constant"


def _full_size_transformer():
    """The 2B turbo's DiT on the meta device: real module names, no memory."""
    from engine.checkpoint.layout import TRANSFORMER, component_classes, component_configs

    config = json.loads((PROJECT_ROOT / "bench" / "turbo-2b-config.json").read_text())
    with torch.device("meta"):
        return component_classes()[TRANSFORMER](**component_configs(config)[TRANSFORMER])


def test_attention_types_select_192_or_96_modules_of_the_2b_model() -> None:
    from training.trainable_adapters import resolve_target_modules

    transformer = _full_size_transformer()
    default = ["q_proj", "k_proj", "v_proj", "o_proj"]
    both = resolve_target_modules(transformer, "both", default)
    assert len(both) == 192
    assert both[:4] == [f"layers.0.self_attn.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")]
    cross = resolve_target_modules(transformer, "cross", default)
    assert len(cross) == 96 and all(".cross_attn." in n for n in cross)
    assert len(resolve_target_modules(transformer, "self", ["to_q", "to_v"])) == 48
    named = resolve_target_modules(transformer, "both", ["layers.3.cross_attn.to_v", "gate_proj"])
    assert named[0] == "layers.0.mlp.gate_proj" and "layers.3.cross_attn.to_v" in named
    assert len(named) == 25
    with pytest.raises(ConfigError, match="--target-modules qq_proj: matches no linear layer"):
        resolve_target_modules(transformer, "both", ["qq_proj"])
    with pytest.raises(ConfigError, match="with --attention-type self"):
        resolve_target_modules(transformer, "self", ["layers.3.cross_attn.to_v"])


def test_device_and_precision_auto_rules_and_explicit_choices() -> None:
    from training.devices import resolve_runtime

    runtime = resolve_runtime("auto", "auto", "auto")
    if not torch.cuda.is_available():
        assert (runtime.device.type, runtime.dtype, runtime.attention) == (
            "cpu",
            torch.float32,
            "sdpa",
        )
        assert resolve_runtime("cpu", "bf16", "sdpa").dtype == torch.bfloat16
        with pytest.raises(ConfigError, match="--device cuda: no such device here"):
            resolve_runtime("cuda", "auto", "auto")
        with pytest.raises(ConfigError, match="flash_attention_2 needs"):
            resolve_runtime("cpu", "bf16", "flash_attention_2")
    assert resolve_runtime("cpu", "fp16", "auto").dtype == torch.float16
