"""`estimate`: a module made sensitive on purpose comes first, nothing is
trained, and the suggestion is a valid `--target-modules`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.train_helpers import (
    fast_config,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.devices import resolve_runtime
from training.estimate import estimate
from training.model import load_model

PLANTED = "layers.0.cross_attn.to_out.0"


def plant(transformer: torch.nn.Module, factor: float = 20.0) -> None:
    """Make PLANTED `factor` times more sensitive without changing what the model
    computes: its input (the value projection's output) grows by `factor` and its
    own weight shrinks by as much, so its weight gradient grows by `factor` and
    every other gradient stays as it was."""
    modules = dict(transformer.named_modules())
    with torch.no_grad():
        modules["layers.0.cross_attn.to_v"].weight.mul_(factor)
        modules[PLANTED].weight.div_(factor)


@pytest.mark.parametrize("metric", ["grad_norm", "fisher"])
def test_a_planted_sensitive_module_ranks_first(
    metric: str, dataset, tiny_checkpoint_dir: Path, tmp_path: Path
) -> None:
    config = fast_config(
        tiny_checkpoint_dir,
        tmp_path,
        dataset_dir=dataset[1],
        estimate_batches=2,
        top_k=3,
        estimate_metric=metric,
        estimate_output=tmp_path / "estimate.json",
    )
    model = load_model(config, resolve_runtime("cpu", "fp32", "sdpa"))
    plant(model.transformer)
    before = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    result = estimate(config, model=model)
    assert result.ranking[0][0] == PLANTED
    assert len(result.ranking) == 16  # 2 layers x (self + cross) x 4 projections
    assert result.ranking[0][1] > 2 * result.ranking[1][1]
    after = model.transformer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in model.transformer.parameters())

    suggestion = (tmp_path / "target_modules.txt").read_text().split()
    assert suggestion == result.top and suggestion[0] == PLANTED and len(suggestion) == 3
    from training.trainable_adapters import resolve_target_modules

    chosen = resolve_target_modules(model.transformer, "both", suggestion)
    assert sorted(chosen) == sorted(suggestion)


def test_estimate_command_prints_the_ranking(dataset, tiny_checkpoint_dir, tmp_path, capsys):
    from training.cli import guarded, parse, run_command

    args, config = parse(
        [
            "estimate",
            "--checkpoint-dir",
            str(tiny_checkpoint_dir),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--dataset-dir",
            str(dataset[1]),
            "--estimate-batches",
            "1",
            "--top-k",
            "4",
            "--attention-type",
            "cross",
            "--num-workers",
            "0",
            "--estimate-output",
            str(tmp_path / "e.json"),
        ]
    )
    status = guarded(lambda: run_command(args, config))
    out = capsys.readouterr().out
    assert status == 0
    assert "--target-modules layers." in out and "self_attn" not in out
    assert len((tmp_path / "target_modules.txt").read_text().split()) == 4
