"""The wizard, driven by scripted answers: going back, presets, and the flow from
preprocessing into training, each ending in a real (tiny) run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT
from tests.support.train_helpers import (
    make_audio_dir,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.config import TrainConfig
from training.presets import save_preset
from training.wizard import run_wizard
from training.wizard_ask import available_variants, pick

#: Hyperparameters for a quick CPU run, saved as a preset the wizard can load.
FAST = TrainConfig(
    rank=4,
    alpha=4.0,
    gradient_accumulation=1,
    warmup_steps=0,
    num_workers=0,
    save_every=0,
    log_every=1,
    gradient_checkpointing=False,
    device="cpu",
)


@pytest.fixture
def presets(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    save_preset("fast", FAST, folder, "quick CPU run")
    return folder


def drive(answers: list[str], presets: Path) -> tuple[int, str]:
    out = io.StringIO()
    status = run_wizard(io.StringIO("\n".join(answers) + "\n"), out, presets_dir=presets)
    return status, out.getvalue()


def test_going_back_changes_earlier_answers_and_the_run_uses_them(
    dataset, tiny_checkpoint_dir: Path, tmp_path: Path, presets: Path, env_file: Path
) -> None:
    out = tmp_path / "out"
    status, text = drive(
        [
            "1",  # train
            "lokr",
            "b",  # adapter, then back from the mode question
            "lora",
            "vanilla",
            "b",  # ... and back from the checkpoint question
            "fixed",
            str(tiny_checkpoint_dir),
            str(tmp_path / "nowhere"),  # refused: not a folder, asked again
            str(dataset[1]),
            str(out),
            "fast",  # preset
            "",  # basic settings
            "3",
            "b",
            "1",  # epochs 3, back from the learning rate, epochs 1
            "0.01",
            "",
            "",
            "",  # lr, rank and alpha and checkpoints from the preset
            "y",
            "",  # start, no preset saved
            "q",
        ],
        presets,
    )
    assert status == 0, text
    assert "--dataset-dir" in text and "no such folder" in text
    assert "Preset 'fast' applied." in text
    saved = json.loads((out / "final" / "config.json").read_text())
    assert (saved["adapter_type"], saved["mode"], saved["epochs"], saved["lr"]) == (
        "lora",
        "fixed",
        1,
        0.01,
    )
    assert (saved["rank"], saved["num_workers"]) == (4, 0)
    assert (out / "final" / "adapter" / "pytorch_lora_weights.safetensors").is_file()


def test_preprocessing_flows_into_training(
    tiny_checkpoint_dir: Path, tmp_path: Path, presets: Path, env_file: Path
) -> None:
    audio = make_audio_dir(tmp_path / "audio", ["synth.wav"], broken=False)
    tensors, out = tmp_path / "tensors", tmp_path / "out"
    status, text = drive(
        [
            "2",
            str(audio),
            "",
            str(tensors),
            "0.6",
            str(tiny_checkpoint_dir),
            "y",
            "y",  # train on these tensors now
            "",
            "",
            "",
            "",  # adapter, mode, checkpoint and dataset as prefilled
            str(out),
            "fast",
            "",
            "1",
            "",
            "",
            "",
            "",
            "y",
            "mine",  # start, and save the answers as preset 'mine'
            "q",
        ],
        presets,
    )
    assert status == 0, text
    assert "1 encoded" in text and "Train on these tensors now?" in text
    assert (out / "final" / "adapter" / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((presets / "mine.json").read_text())["rank"] == 4


def test_presets_menu_and_input_that_ends(presets: Path) -> None:
    status, text = drive(["4", "show fast", "delete minimal", "delete fast", "b", "q"], presets)
    assert status == 0
    assert '"rank": 4' in text
    assert "no saved preset named 'minimal'" in text and "Deleted 'fast'." in text
    assert not (presets / "fast.json").exists()
    status, text = drive(["1"], presets)
    assert status == 2 and "No more input" in text


def test_train_py_without_arguments_opens_the_wizard() -> None:
    out = subprocess.run(
        [sys.executable, "train.py"],
        cwd=PROJECT_ROOT,
        input="q\n",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    assert "1) Train an adapter" in out.stdout and "b = back" in out.stdout


def test_models_are_picked_by_number_or_part_of_the_name(tiny_original_checkpoint_dir) -> None:
    choices = ("turbo", "base", "sft", "xl-turbo")
    assert pick("2", choices) == "base"
    assert pick("sf", choices) == "sft"
    assert pick("xl", choices) == "xl-turbo"
    assert pick("turbo", choices) == "turbo"  # exact name beats "xl-turbo"
    assert pick("9", choices) is None and pick("zzz", choices) is None
    assert available_variants(tiny_original_checkpoint_dir) == ["turbo"]


def test_the_wizard_stays_open_after_each_kind_of_error_and_keeps_the_answers(
    dataset, tiny_checkpoint_dir: Path, tmp_path: Path, presets: Path, env_file: Path
) -> None:
    """A folder of audio as the dataset (refused at the question), a device this
    machine lacks (refused before the summary, nothing written), then a model that
    cannot load (said, back to the menu): each time the answers are kept, and the
    run that follows needs only the answer that was wrong."""
    save_preset("gpu", FAST.replace(device="cuda"), presets, "needs a GPU")
    broken_model = tmp_path / "broken-model"
    broken_model.mkdir()
    (broken_model / "model_index.json").write_text("{ this is not json")
    audio = make_audio_dir(tmp_path / "audio", ["synth.wav"], broken=False)
    out = tmp_path / "out"
    status, text = drive(
        [
            "1",
            "lora",
            "fixed",
            str(broken_model),
            str(audio),  # refused: audio, not a preprocessed dataset
            str(dataset[1]),
            str(out),
            "gpu",
            "",
            "1",
            "0.01",
            "",
            "",
            "",
            # the device is refused before the summary; asked again, answers kept
            "",
            "",
            "",
            "",
            "",
            "fast",
            "",
            "1",
            "0.01",
            "",
            "",
            "",
            "y",
            "",  # start: the model cannot load
            "1",
            "",
            "",
            str(tiny_checkpoint_dir),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "y",
            "",  # the answers kept: only the model changed
            "q",
        ],
        presets,
    )
    assert status == 0, text
    assert "audio has no manifest.json: it is not a preprocessed dataset" in text
    assert "--device cuda: no such device here" in text
    assert "model_index.json cannot be read as JSON" in text and "Your answers are kept" in text
    assert text.count("Start training?") == 2
    saved = json.loads((out / "final" / "config.json").read_text())
    assert (saved["epochs"], saved["lr"], saved["device"]) == (1, 0.01, "cpu")
