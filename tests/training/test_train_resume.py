"""`--resume-from CHECKPOINT` alone: the run's settings come from the checkpoint's
saved config, and a dataset that changed since the checkpoint is refused before
anything is written, unless `--force-resume`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.train_helpers import (
    fast_config,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.cli import parse, run_command
from training.config import ConfigError
from training.loop import train
from training.storage import Manifest


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def test_resume_takes_the_checkpoints_settings_and_refuses_a_changed_dataset(
    dataset, tiny_checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = Path(shutil.copytree(dataset[1], tmp_path / "tensors"))
    out = tmp_path / "out"
    config = fast_config(
        tiny_checkpoint_dir, tmp_path, dataset_dir=data, output_dir=out, epochs=1, rank=8, alpha=16.0, lr=3e-3, seed=11
    )
    first = train(config, plain=True)
    tracks = len(Manifest.load(data).samples)
    assert first.step == tracks

    # Only the checkpoint and what changes: every other setting is the saved one.
    args, resumed = parse(["--plain", "--yes", "fixed", "--resume-from", str(first.checkpoint_dir), "--epochs", "2"])
    assert (resumed.rank, resumed.alpha, resumed.lr, resumed.seed) == (8, 16.0, 3e-3, 11)
    assert (Path(resumed.dataset_dir), Path(resumed.checkpoint_dir)) == (data, tiny_checkpoint_dir)
    assert (resumed.epochs, Path(resumed.output_dir)) == (2, out)
    assert run_command(args, resumed) == 0
    assert f"Training finished at step {2 * tracks}" in capsys.readouterr().out
    # A setting that defines the adapter may not change on resume.
    args, other = parse(
        ["--plain", "--yes", "fixed", "--resume-from", str(out / "final"), "--epochs", "3", "--rank", "4"]
    )
    with pytest.raises(ConfigError, match="--rank was 8, now 4"):
        run_command(args, other)

    # A track removed from the dataset: refused before anything is written.
    manifest = Manifest.load(data)
    manifest.samples.pop(sorted(manifest.samples)[0])
    manifest.save()
    before = files_under(out)
    argv = ["--plain", "--yes", "fixed", "--resume-from", str(out / "final"), "--epochs", "3"]
    args, again = parse(argv)
    with pytest.raises(
        ConfigError,
        match=r"dataset changed since this checkpoint \(1 track "
        r"removed\).*--force-resume",
    ):
        run_command(args, again)
    assert files_under(out) == before
    args, forced = parse([*argv, "--force-resume"])
    assert run_command(args, forced) == 0
    assert "Training finished at step" in capsys.readouterr().out
