"""Preprocessed tracks as batches: dataset, padding with masks, resumable order.

- `TrackDataset` reads the tensor files listed in a dataset folder's manifest.
- `collate` pads a batch to its longest track and returns `latent_mask`
  (1 on real frames) so the loss ignores padding; conditions are padded too,
  with `encoder_attention_mask`.
- `EpochBatchSampler` gives each epoch a permutation drawn from the seed and the
  epoch number alone, and can start an epoch part-way: that is what makes
  `--resume-from` continue with exactly the batches a straight run would see.
- `split_keys` holds out a deterministic validation set (a track's side
  depends only on its key and the seed, so adding tracks does not reshuffle it).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from training.config import TrainConfig
from training.storage import TENSOR_KEYS, DatasetFormatError, Manifest, read_tensors

if TYPE_CHECKING:
    from training.model import TrainingModel

log = logging.getLogger(__name__)


class TrackDataset(Dataset):
    """The tracks `keys` of a preprocessed dataset folder (all when None)."""

    def __init__(self, folder: Path, keys: list[str] | None = None):
        self.manifest = Manifest.load(folder)
        available = sorted(self.manifest.samples)
        self.keys = available if keys is None else list(keys)
        missing = [k for k in self.keys if k not in self.manifest.samples]
        if missing:
            raise DatasetFormatError(f"{folder}: no tracks named {', '.join(missing)}")
        for key in self.keys:
            path = Path(folder) / self.manifest.samples[key]["file"]
            if not path.is_file():
                raise DatasetFormatError(f"{path} (track {key}) is missing: preprocess again to restore it")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.manifest.samples[self.keys[index]]
        path = self.manifest.folder / entry["file"]
        tensors = read_tensors(path)
        absent = [k for k in TENSOR_KEYS if k not in tensors]
        if absent:
            raise DatasetFormatError(f"{path} lacks {', '.join(absent)}: preprocess again")
        return tensors

    def caption(self, index: int) -> dict:
        return dict(self.manifest.samples[self.keys[index]]["text"])


def check_compatible(manifest: Manifest, transformer: torch.nn.Module) -> None:
    """The dataset must have been made for a model of this shape."""
    config = transformer.config
    condition_dim = int(config.encoder_hidden_size or config.hidden_size)
    channels = int(config.audio_acoustic_hidden_dim)
    if (manifest.condition_dim, manifest.latent_channels) != (condition_dim, channels):
        raise DatasetFormatError(
            f"{manifest.folder} was preprocessed for a model with condition size "
            f"{manifest.condition_dim} and {manifest.latent_channels} latent channels; this "
            f"model has {condition_dim} and {channels}. Preprocess again with this model."
        )


def warn_if_other_model(manifest: Manifest, model: TrainingModel) -> None:
    """Each variant has its own condition encoder: tensors made with another
    model train on conditions this one would not produce."""
    from training.preprocess import model_fingerprint
    from training.sidestep import MODEL_PREFIX, check_variant

    if manifest.model.startswith(MODEL_PREFIX):
        message = check_variant(manifest, model.info.variant)
        if message is not None:
            log.warning(message)
        return
    made_with = manifest.model.rsplit(":", 1)[0]
    this = model_fingerprint(model.info, model.runtime.precision_name).rsplit(":", 1)[0]
    if made_with != this:
        log.warning(
            "%s was preprocessed with %s, this run uses %s: the condition encoders may "
            "differ; preprocess again with this model for conditions as inference makes them",
            manifest.folder,
            made_with or "an unknown model",
            this,
        )


def _pad(tensors: list[torch.Tensor], length: int) -> torch.Tensor:
    out = tensors[0].new_zeros((len(tensors), length, *tensors[0].shape[1:]))
    for row, tensor in enumerate(tensors):
        out[row, : tensor.shape[0]] = tensor
    return out


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    frames = max(item["target_latents"].shape[0] for item in items)
    tokens = max(item["encoder_hidden_states"].shape[0] for item in items)
    latent_mask = torch.zeros(len(items), frames)
    for row, item in enumerate(items):
        latent_mask[row, : item["target_latents"].shape[0]] = 1.0
    return {
        "target_latents": _pad([i["target_latents"] for i in items], frames),
        "context_latents": _pad([i["context_latents"] for i in items], frames),
        "latent_mask": latent_mask,
        "encoder_hidden_states": _pad([i["encoder_hidden_states"] for i in items], tokens),
        "encoder_attention_mask": _pad([i["encoder_attention_mask"].float() for i in items], tokens),
    }


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices; epoch `e` is a fixed permutation from (seed, e)."""

    def __init__(self, size: int, batch_size: int, seed: int, *, shuffle: bool = True):
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration yields epoch `epoch` from batch `start_batch` on."""
        self.epoch = epoch
        self.start = start_batch

    def batches(self, epoch: int) -> list[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        return [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)[self.start :]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


def split_keys(keys: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation): the `fraction` of keys with the smallest hash of
    (seed, key), at least one when `fraction > 0`, never all of them."""
    if fraction <= 0 or len(keys) < 2:
        return sorted(keys), []

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()

    count = min(max(1, round(len(keys) * fraction)), len(keys) - 1)
    held = set(sorted(keys, key=rank)[:count])
    return sorted(k for k in keys if k not in held), sorted(held)


def make_loader(
    dataset: TrackDataset,
    config: TrainConfig,
    device: torch.device,
    *,
    shuffle: bool = True,
    batch_size: int | None = None,
) -> tuple[DataLoader, EpochBatchSampler]:
    """A DataLoader with seeds/003's loading options. It has its own generator, so
    creating it (and its workers' seeds) never draws from the global RNG that
    adapter dropout uses: a resumed run stays identical to a straight one."""
    sampler = EpochBatchSampler(len(dataset), batch_size or config.batch_size, config.seed, shuffle=shuffle)
    workers = config.num_workers
    options = {}
    if workers > 0:
        options = {
            "prefetch_factor": config.prefetch_factor,
            "persistent_workers": config.persistent_workers,
        }
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        pin_memory=config.pin_memory and device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),
        **options,
    )
    return loader, sampler
