"""`--preprocess`: a folder of audio (and captions, lyrics) -> training tensors.

Two passes, so that only one pass's models are on the GPU at a time:

1. VAE + text encoder: each track is decoded (48 kHz stereo, truncated to
   `--max-duration`), VAE-encoded in tiles to `target_latents [T, 64]`, and its
   caption and lyrics are encoded with the inference templates. Results go to
   an intermediate file per track.
2. Condition encoder: each intermediate file becomes `encoder_hidden_states`,
   `encoder_attention_mask` and `context_latents`, written with the latents as
   the track's final tensor file; the intermediate file is removed.

A track whose audio, caption, lyrics, settings and model are unchanged since
the last run, and whose tensor file is intact, is skipped; anything else is
encoded again. A file that cannot be read is reported and skipped. Tracks that
are no longer in the source are dropped from the manifest and their tensor
files removed, so training never sees a track the user took out.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.checkpoint.find import CheckpointInfo
from training.audio_io import AudioReadError, check_audio, read_audio
from training.config import TrainConfig
from training.devices import Runtime, resolve_runtime, vram_gb
from training.encoding import (
    context_latents,
    encode_audio,
    encode_conditions,
    encode_text,
    tile_frames,
)
from training.model import TrainingModel, find_model, load_model, move
from training.preprocess_progress import LogReport, PreprocessReport
from training.storage import (
    Manifest,
    file_sha256,
    read_tensors,
    sample_file_name,
    text_sha256,
    write_tensors,
)
from training.tracks import TrackProblem, TrackSource, find_tracks

log = logging.getLogger(__name__)

#: Bump when what preprocessing writes changes, so older tensors are redone.
PREPROCESS_VERSION = 1
PASS1_SUFFIX = ".pass1.safetensors"


@dataclass(frozen=True)
class _Pass1:
    track: TrackSource
    source: str
    intermediate: Path
    duration: float


@dataclass
class PreprocessResult:
    folder: Path
    encoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[TrackProblem] = field(default_factory=list)

    @property
    def usable(self) -> int:
        return len(self.encoded) + len(self.skipped)

    def summary(self) -> str:
        text = (
            f"{len(self.encoded)} encoded, {len(self.skipped)} unchanged, "
            f"{len(self.problems)} skipped with problems -> {self.folder}"
        )
        for problem in self.problems:
            text += f"\n  {problem.key}: {problem.reason}"
        return text


def default_tile_seconds(runtime: Runtime) -> float:
    """Upstream's rule: 15 s tiles on GPUs with 8 GB or less, else 30 s."""
    memory = vram_gb(runtime.device)
    return 15.0 if memory is not None and memory <= 8.5 else 30.0


def model_fingerprint(info: CheckpointInfo, precision: str) -> str:
    """Which model (and precision) made a dataset; kept in its manifest."""
    return f"{info.layout}:{info.path.resolve()}:{info.name}:{precision}"


def _source_checksum(track: TrackSource, config: TrainConfig, model: str, tile: float) -> str:
    return text_sha256(
        PREPROCESS_VERSION,
        file_sha256(track.path),
        track.describe(),
        config.max_duration,
        tile,
        config.seed,
        model,
    )


def _pass1(
    model: TrainingModel,
    todo: list[tuple[TrackSource, str]],
    config: TrainConfig,
    tile_seconds: float,
    out: Path,
    result: PreprocessResult,
    report: PreprocessReport,
) -> list[_Pass1]:
    pipe, device = model.pipe, model.runtime.device
    move([pipe.vae, pipe.text_encoder], device)
    tile, overlap = tile_frames(tile_seconds, pipe.latents_per_second)
    done = []
    try:
        for track, source in todo:
            try:
                audio = read_audio(track.path, sample_rate=pipe.sample_rate, max_seconds=config.max_duration)
                duration = audio.shape[-1] / pipe.sample_rate
                generator = torch.Generator().manual_seed(int(source[:8], 16) ^ config.seed)
                latents = encode_audio(
                    pipe.vae,
                    torch.from_numpy(audio),
                    tile=tile,
                    overlap=overlap,
                    generator=generator,
                )
                text = encode_text(pipe, track.text(duration), device)
            except Exception as exc:  # one bad track never stops the run
                log.debug("Pass 1 failed for %s:\n%s", track.key, traceback.format_exc())
                result.problems.append(TrackProblem(track.key, str(exc)))
                report.track(track.key, f"skipped: {exc}")
                continue
            intermediate = out / (sample_file_name(track.key) + PASS1_SUFFIX)
            tensors = {"target_latents": latents, **{k: v.float() for k, v in text.items()}}
            tensors["text_attention_mask"] = text["text_attention_mask"].to(torch.int8)
            tensors["lyric_attention_mask"] = text["lyric_attention_mask"].to(torch.int8)
            write_tensors(intermediate, tensors, {"key": track.key})
            done.append(_Pass1(track, source, intermediate, duration))
            report.track(track.key, "pass 1 done")
    finally:
        move([pipe.vae, pipe.text_encoder], torch.device("cpu"))
    return done


def _pass2(
    model: TrainingModel,
    done: list[_Pass1],
    manifest: Manifest,
    result: PreprocessResult,
    report: PreprocessReport,
) -> None:
    pipe, device = model.pipe, model.runtime.device
    move([pipe.condition_encoder], device)
    try:
        for item in done:
            track = item.track
            try:
                stage = read_tensors(item.intermediate)
                text = {
                    "text_hidden_states": stage["text_hidden_states"],
                    "text_attention_mask": stage["text_attention_mask"].bool(),
                    "lyric_hidden_states": stage["lyric_hidden_states"],
                    "lyric_attention_mask": stage["lyric_attention_mask"].bool(),
                }
                states, mask = encode_conditions(pipe, text, device)
                latents = stage["target_latents"]
                context = context_latents(pipe, latents.shape[0], device, states.dtype)
            except Exception as exc:
                log.debug("Pass 2 failed for %s:\n%s", track.key, traceback.format_exc())
                result.problems.append(TrackProblem(track.key, str(exc)))
                report.track(track.key, f"skipped: {exc}")
                continue
            name = sample_file_name(track.key)
            write_tensors(
                manifest.folder / name,
                {
                    "target_latents": latents.float(),
                    "encoder_hidden_states": states.float().cpu(),
                    "encoder_attention_mask": mask.to(torch.int8).cpu(),
                    "context_latents": context.float().cpu(),
                },
                {"key": track.key},  # one key: safetensors writes several in any order
            )
            manifest.samples[track.key] = {
                "key": track.key,
                "file": name,
                "sha256": file_sha256(manifest.folder / name),
                "source": item.source,
                "frames": int(latents.shape[0]),
                "duration": round(item.duration, 3),
                "text": track.describe(),
            }
            manifest.save()
            item.intermediate.unlink(missing_ok=True)
            result.encoded.append(track.key)
            report.track(track.key, "encoded")
    finally:
        move([pipe.condition_encoder], torch.device("cpu"))


def _drop_stale(manifest: Manifest, keep: set[str]) -> None:
    for key in sorted(set(manifest.samples) - keep):
        (manifest.folder / manifest.samples.pop(key)["file"]).unlink(missing_ok=True)
        log.info("Removed %s: it is no longer in the source", key)


def preprocess(
    config: TrainConfig,
    *,
    model: TrainingModel | None = None,
    report: PreprocessReport | None = None,
) -> PreprocessResult:
    """Preprocess `config.audio_dir` / `config.dataset_json` into `config.tensor_output`.

    `model` may be given to reuse a loaded pipeline (it must be the one the
    config names). `report` is told how far it is (default: log lines). Returns
    what was encoded, skipped and why.
    """
    config.check("preprocess")
    report = report or LogReport()
    out = Path(config.tensor_output)
    out.mkdir(parents=True, exist_ok=True)
    result = PreprocessResult(out)
    tracks, problems = find_tracks(config.audio_dir, config.dataset_json)
    result.problems.extend(problems)
    report.start(len(tracks) + len(problems))
    for problem in problems:
        report.track(problem.key, f"skipped: {problem.reason}")
    runtime = (
        model.runtime
        if model is not None
        else resolve_runtime(config.device, config.precision, config.attention_backend)
    )
    fingerprint = model_fingerprint(find_model(config), runtime.precision_name)
    tile_seconds = config.vae_tile_seconds or default_tile_seconds(runtime)
    manifest = Manifest.load(out, missing_ok=True)
    todo = []
    for track in tracks:
        try:
            source = _source_checksum(track, config, fingerprint, tile_seconds)
            if manifest.is_current(track.key, source):
                result.skipped.append(track.key)
                report.track(track.key, "unchanged, skipped")
                continue
            check_audio(track.path)
        except (OSError, AudioReadError) as exc:
            result.problems.append(TrackProblem(track.key, str(exc)))
            report.track(track.key, f"skipped: {exc}")
            continue
        todo.append((track, source))
    _drop_stale(manifest, {track.key for track in tracks} - {p.key for p in result.problems})
    if todo:
        model = model or load_model(config, runtime)
        manifest.model = fingerprint
        dit = model.transformer.config
        manifest.condition_dim = int(dit.encoder_hidden_size or dit.hidden_size)
        manifest.latent_channels = int(dit.audio_acoustic_hidden_dim)
        manifest.latents_per_second = float(model.pipe.latents_per_second)
        done = _pass1(model, todo, config, tile_seconds, out, result, report)
        _pass2(model, done, manifest, result, report)
    for key in {p.key for p in result.problems}:
        if key in manifest.samples and key not in result.encoded:
            # A track that now fails must not keep training on its old tensors.
            (out / manifest.samples.pop(key)["file"]).unlink(missing_ok=True)
    manifest.problems = [{"key": p.key, "reason": p.reason} for p in result.problems]
    manifest.save()
    log.info("Preprocessing: %s", result.summary())
    return result
