"""Side-Step's preprocessed datasets, imported once into this trainer's format.

Side-Step (seeds/003: `--dataset-dir` is "a directory containing your
preprocessed `.pt` tensor files and `manifest.json`") writes, per track, one
`torch.save`d dict:

    target_latents [T, 64]   attention_mask [T]   context_latents [T, 128]
    encoder_hidden_states [L, D]   encoder_attention_mask [L]   metadata {...}

(newer versions add `encoder_hidden_states_genre` / `encoder_attention_mask_genre`,
a second caption variant, which this trainer does not use), and a
`manifest.json` of the form `{"metadata": {...}, "samples": ["song.pt", ...],
"num_samples": N}` (paths relative to the folder, or absolute). Newer versions
also write `preprocess_meta.json` with the `model_variant` whose condition
encoder made the tensors and an MD5 `checksums` entry per `.pt` file.

Import. Each `.pt` file is read with `torch.load(weights_only=True)` (tensors
and plain data only: an arbitrary pickle is refused, never run), checked
against the MD5 in `preprocess_meta.json` when there is one, checked for the
keys and shapes above and for finite values, and written as this trainer's
safetensors file with the usual manifest (sha256 per tensor file) into
`<dataset>/radio-import/`. That happens once: a later run finds each track's
import current (same `.pt` checksum, intact tensor file) and skips it, imports
a changed `.pt` again and drops the tracks whose `.pt` is gone, exactly as
preprocessing treats audio files. The condition size and latent channels are
recorded as for our own datasets (`training.data.check_compatible`), and the
model variant as `sidestep:<variant>` (`check_variant` warns when training
another variant, as `_warn_if_other_model` does for our own datasets).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.storage import (
    MANIFEST,
    DatasetFormatError,
    Manifest,
    file_sha256,
    sample_file_name,
    text_sha256,
    write_tensors,
)
from training.tracks import TrackProblem

log = logging.getLogger(__name__)

IMPORT_DIR = "radio-import"
META = "preprocess_meta.json"
#: The model name a Side-Step import records: `sidestep:<variant>`.
MODEL_PREFIX = "sidestep:"
#: Bump when what an import writes changes, so older imports are redone.
IMPORT_VERSION = 1
REQUIRED = (
    "target_latents",
    "encoder_hidden_states",
    "encoder_attention_mask",
    "context_latents",
)


@dataclass
class ImportResult:
    folder: Path  # the imported dataset, in this trainer's format
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: list[TrackProblem] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{len(self.imported)} imported, {len(self.unchanged)} unchanged, "
            f"{len(self.problems)} skipped with problems -> {self.folder}"
        )
        return text + "".join(f"\n  {p.key}: {p.reason}" for p in self.problems)


def is_sidestep_dataset(folder: Path) -> bool:
    """A folder of Side-Step `.pt` tensors (with its manifest), not one of ours."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
        except ValueError:
            return False
        samples = data.get("samples") if isinstance(data, dict) else None
        return isinstance(samples, list) and all(isinstance(s, str) for s in samples)
    return any(folder.glob("*.pt"))


def _sample_paths(folder: Path) -> list[Path]:
    """The `.pt` files the manifest lists (every `*.pt` when there is no manifest)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return sorted(folder.glob("*.pt"))
    samples = json.loads(manifest.read_text())["samples"]
    paths = []
    for entry in samples:
        path = Path(entry.strip().replace("\\", "/"))
        paths.append(path if path.is_absolute() else folder / path)
    return paths


def _meta(folder: Path) -> tuple[str, dict[str, str]]:
    """(model variant, {file name: md5}) from `preprocess_meta.json`, if there is one."""
    path = folder / META
    if not path.is_file():
        return "unknown", {}
    try:
        data = json.loads(path.read_text())
        checksums = {str(k): str(v) for k, v in dict(data.get("checksums") or {}).items()}
        return str(data.get("model_variant") or "unknown"), checksums
    except (ValueError, TypeError, AttributeError) as exc:
        raise DatasetFormatError(f"{path} is damaged ({exc}); preprocess again") from None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidestep_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of one Side-Step `.pt` file as this trainer stores them, and its
    metadata. Raises `DatasetFormatError` naming what is wrong."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code in it, a damaged or foreign file
        raise DatasetFormatError(f"not a Side-Step tensor file ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"holds a {type(data).__name__}, not a dict of tensors")
    absent = [key for key in REQUIRED if not isinstance(data.get(key), torch.Tensor)]
    if absent:
        raise DatasetFormatError(f"lacks {', '.join(absent)}")
    latents, states = data["target_latents"], data["encoder_hidden_states"]
    context, mask = data["context_latents"], data["encoder_attention_mask"]
    frames, channels = latents.shape if latents.dim() == 2 else (0, 0)
    if latents.dim() != 2 or states.dim() != 2:
        raise DatasetFormatError("target_latents and encoder_hidden_states must be 2-D")
    if tuple(context.shape) != (frames, 2 * channels):
        raise DatasetFormatError(f"context_latents is {tuple(context.shape)}; expected ({frames}, {2 * channels})")
    if tuple(mask.shape) != (states.shape[0],):
        raise DatasetFormatError(f"encoder_attention_mask is {tuple(mask.shape)}; expected ({states.shape[0]},)")
    tensors = {
        "target_latents": latents.float(),
        "encoder_hidden_states": states.float(),
        "encoder_attention_mask": (mask > 0).to(torch.int8),
        "context_latents": context.float(),
    }
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise DatasetFormatError("holds NaN or infinite values")
    metadata = data.get("metadata")
    return tensors, metadata if isinstance(metadata, dict) else {}


def _text(metadata: dict[str, Any]) -> dict[str, Any]:
    """What our manifest keeps about a track's prompt (used for training samples)."""
    lyrics = str(metadata.get("lyrics") or "")
    return {
        "caption": str(metadata.get("caption") or metadata.get("filename") or ""),
        "lyrics": "" if lyrics.strip().lower() == "[instrumental]" else lyrics,
        "language": str(metadata.get("language") or "en"),
        "bpm": metadata.get("bpm"),
        "keyscale": metadata.get("keyscale") or None,
        "timesignature": metadata.get("timesignature") or None,
    }


def import_sidestep(folder: Path, *, report: Callable[[str, str], None] | None = None) -> ImportResult:
    """Import (or bring up to date) the Side-Step dataset in `folder`; see the module
    docstring. Raises `DatasetFormatError` when no track can be used."""
    folder = Path(folder)
    report = report or (lambda key, what: log.info("Side-Step %s: %s", key, what))
    out = folder / IMPORT_DIR
    variant, checksums = _meta(folder)
    manifest = Manifest.load(out, missing_ok=True)
    result = ImportResult(out)
    keep: set[str] = set()
    for path in _sample_paths(folder):
        key = path.name
        keep.add(key)
        try:
            source = text_sha256(IMPORT_VERSION, file_sha256(path), variant)
            if manifest.is_current(key, source):
                result.unchanged.append(key)
                continue
            expected = checksums.get(path.name)
            if expected is not None and _md5(path) != expected:
                raise DatasetFormatError(f"its MD5 differs from the one in {META}: the file changed or is damaged")
            tensors, metadata = read_sidestep_tensors(path)
            frames, channels = tensors["target_latents"].shape
            dim = int(tensors["encoder_hidden_states"].shape[1])
            others = set(manifest.samples) - {key}
            if others and (manifest.condition_dim, manifest.latent_channels) != (dim, channels):
                raise DatasetFormatError(
                    f"condition size {dim} and {channels} latent channels differ from the other tracks'"
                )
        except (OSError, DatasetFormatError) as exc:
            result.problems.append(TrackProblem(key, str(exc)))
            report(key, f"skipped: {exc}")
            if key in manifest.samples:  # never train on a failing track's old tensors
                (out / manifest.samples.pop(key)["file"]).unlink(missing_ok=True)
            continue
        manifest.condition_dim, manifest.latent_channels = dim, int(channels)
        name = sample_file_name(key)
        write_tensors(out / name, tensors, {"key": key})
        duration = float(metadata.get("duration") or 0) or frames / 25.0
        manifest.samples[key] = {
            "key": key,
            "file": name,
            "sha256": file_sha256(out / name),
            "source": source,
            "frames": int(frames),
            "duration": round(duration, 3),
            "text": _text(metadata),
        }
        manifest.model = MODEL_PREFIX + variant
        manifest.latents_per_second = manifest.latents_per_second or 25.0
        manifest.save()
        result.imported.append(key)
        report(key, "imported")
    for key in sorted(set(manifest.samples) - keep):
        (out / manifest.samples.pop(key)["file"]).unlink(missing_ok=True)
    manifest.problems = [{"key": p.key, "reason": p.reason} for p in result.problems]
    manifest.save()
    if not manifest.samples:
        raise DatasetFormatError(
            f"{folder} looks like a Side-Step dataset, but none of its tracks can be used:\n{result.summary()}"
        )
    return result


def training_folder(folder: Path) -> Path:
    """Where to read a dataset from: `folder` itself when it is ours, else its import
    (made or brought up to date now, with a message saying so)."""
    folder = Path(folder)
    if not is_sidestep_dataset(folder):
        return folder  # ours, or nothing at all (Manifest.load then says what is missing)
    result = import_sidestep(folder)
    if result.imported:
        log.warning(
            "%s is a Side-Step dataset (.pt tensors): converted once to this trainer's "
            "format in %s (%s). Later runs use the converted copy and convert again only "
            "what changed.",
            folder,
            result.folder,
            result.summary(),
        )
    return result.folder


def check_variant(manifest: Manifest, variant: str) -> str | None:
    """For an imported Side-Step dataset: a warning when its tensors were made with
    another model variant's condition encoder than the one trained now."""
    made_with = manifest.model.removeprefix(MODEL_PREFIX)
    if made_with == variant:
        return None
    if made_with == "unknown":
        return (
            f"{manifest.folder} was imported from Side-Step without {META}, so the variant "
            f"whose condition encoder made it is unknown; this run trains {variant}. "
            "Preprocess the audio again with this model if the sound is off."
        )
    return (
        f"{manifest.folder} was preprocessed by Side-Step with the {made_with} model; this "
        f"run trains {variant}: each variant has its own condition encoder, so preprocess "
        "the audio again with this model for conditions as inference makes them."
    )
