"""`train.py estimate`: which modules does this dataset pull on hardest?

For every candidate module (the linear layers `--attention-type` and
`--target-modules` select; by default all attention projections), the base
weight's gradient of the real training loss (corrected objective, without CFG
dropout) is measured over `--estimate-batches` batches. A module's score is the
mean gradient norm (`grad_norm`), or the mean squared gradient per weight
(`fisher`, a diagonal Fisher estimate that does not favour large layers). The
top `--top-k` are printed and written as a `--target-modules` suggestion.
Nothing is trained: the weights are unchanged afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch

from training.config import TrainConfig, TrainingError
from training.data import TrackDataset, check_compatible, make_loader
from training.devices import resolve_runtime
from training.model import TrainingModel, load_model, timestep_parameters
from training.objective import Objective
from training.sampling import LogitNormal
from training.sidestep import training_folder
from training.storage import write_json
from training.trainable_adapters import resolve_target_modules

log = logging.getLogger(__name__)

SUGGESTION_FILE = "target_modules.txt"


@dataclass
class EstimateResult:
    metric: str
    ranking: list[tuple[str, float]]  # best first
    top: list[str]
    json_path: Path
    suggestion_path: Path

    @property
    def flag(self) -> str:
        return " ".join(self.top)

    def table(self) -> str:
        width = max(len(name) for name, _ in self.ranking)
        rows = [f"{'rank':>4}  {'module':<{width}}  {self.metric}"]
        chosen = set(self.top)
        for index, (name, score) in enumerate(self.ranking, 1):
            mark = " *" if name in chosen else ""
            rows.append(f"{index:>4}  {name:<{width}}  {score:.6g}{mark}")
        return "\n".join(rows)


def score_modules(
    model: TrainingModel,
    objective: Objective,
    loader,
    candidates: list[str],
    *,
    batches: int,
    metric: str,
    seed: int,
) -> list[tuple[str, float]]:
    """Mean score per candidate over `batches` batches, highest first."""
    transformer = model.transformer
    modules = dict(transformer.named_modules())
    weights = {name: modules[name].weight for name in candidates}
    for weight in weights.values():
        weight.requires_grad_(True)
    scores = dict.fromkeys(candidates, 0.0)
    generator = torch.Generator().manual_seed(seed)
    transformer.train()
    used = 0
    try:
        while used < batches:
            before = used
            for batch in islice(loader, batches - used):
                loss, _ = objective.loss(transformer, batch, generator)
                loss.backward()
                for name, weight in weights.items():
                    grad = weight.grad.float()
                    if metric == "fisher":
                        scores[name] += float(grad.pow(2).sum()) / grad.numel()
                    else:
                        scores[name] += float(grad.norm())
                    weight.grad = None
                used += 1
            if used == before:
                raise TrainingError("the dataset gave no batch to measure")
    finally:
        for weight in weights.values():
            weight.requires_grad_(False)
            weight.grad = None
        transformer.eval()
    return sorted(((n, s / used) for n, s in scores.items()), key=lambda item: -item[1])


def estimate(config: TrainConfig, *, model: TrainingModel | None = None) -> EstimateResult:
    config.check("estimate")
    if model is None:
        runtime = resolve_runtime(config.device, config.precision, config.attention_backend)
        model = load_model(config, runtime)
    dataset = TrackDataset(training_folder(config.dataset_dir))
    check_compatible(dataset.manifest, model.transformer)
    device = model.runtime.device
    model.transformer.to(device)
    if config.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    candidates = resolve_target_modules(model.transformer, config.attention_type, config.target_modules)
    loader, _ = make_loader(dataset, config, device)
    mu, sigma = timestep_parameters(config, model)
    null = model.pipe.condition_encoder.null_condition_emb.detach().float().to(device)
    objective = Objective(LogitNormal(mu, sigma), 0.0, null, model.runtime)
    ranking = score_modules(
        model,
        objective,
        loader,
        candidates,
        batches=config.estimate_batches,
        metric=config.estimate_metric,
        seed=config.seed,
    )
    top = [name for name, _ in ranking[: config.top_k]]
    json_path = config.estimate_output or Path(config.dataset_dir) / "estimate.json"
    suggestion = json_path.with_name(SUGGESTION_FILE)
    write_json(
        json_path,
        {
            "metric": config.estimate_metric,
            "batches": config.estimate_batches,
            "model": model.info.describe(),
            "ranking": [{"module": n, "score": s} for n, s in ranking],
            "suggestion": top,
        },
    )
    suggestion.write_text(" ".join(top) + "\n")
    log.info("Estimated %d modules; top %d written to %s", len(ranking), len(top), suggestion)
    return EstimateResult(config.estimate_metric, ranking, top, json_path, suggestion)
