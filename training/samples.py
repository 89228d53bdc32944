"""Sample clips during training, made by the station's own engine.

Every `--sample-every-n-epochs` epochs, each sample prompt is sung through
`MusicEngine.generate` with the adapter being trained active, and written to
`{output-dir}/samples/epoch-N/NN-<title>.wav`. So what you hear is what the
station will play once the adapter is loaded. Prompts come from
`--sample-prompts` (a JSON list of objects with `caption` and optionally
`lyrics`, `bpm`, `key`, `language`, `seed`; or a text file with one caption per
line), else from the first training track.

Sampling runs with the adapter in eval mode, without gradients, and inside a
forked RNG, so it changes nothing about the training that follows (resume
stays exact with samples on).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from engine.spec import KEYS, LANGUAGES, MAX_BPM, MAX_CAPTION, MAX_LYRICS, MIN_BPM, SongSpec
from training.config import ConfigError, TrainConfig
from training.model import TrainingModel, move

log = logging.getLogger(__name__)

DEFAULT_BPM = 120
DEFAULT_KEY = "C major"


def _spec(index: int, fields: dict, duration: int) -> SongSpec:
    caption = " ".join(str(fields.get("caption") or "music").split())[:MAX_CAPTION]
    bpm = fields.get("bpm")
    key = fields.get("key") or fields.get("keyscale")
    language = fields.get("language")
    return SongSpec(
        title=f"sample {index + 1}",
        caption=caption or "music",
        lyrics=str(fields.get("lyrics") or "")[:MAX_LYRICS],
        bpm=int(bpm) if isinstance(bpm, (int, float)) and MIN_BPM <= bpm <= MAX_BPM else DEFAULT_BPM,
        key=key if key in KEYS else DEFAULT_KEY,
        language=language if language in LANGUAGES else "en",
        duration=duration,
        seed=int(fields.get("seed", 1234 + index)),
    )


def sample_specs(config: TrainConfig, first_track: dict) -> list[SongSpec]:
    """The prompts to sample, as songs of `--sample-duration` seconds."""
    path = config.sample_prompts
    if path is None:
        entries = [first_track]
    elif path.suffix.lower() == ".json":
        try:
            entries = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigError([f"--sample-prompts {path}: not valid JSON ({exc})"]) from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError([f'--sample-prompts {path}: expected a JSON list like [{{"caption": "..."}}]'])
    else:
        lines = [line.strip() for line in path.read_text().splitlines()]
        entries = [{"caption": line} for line in lines if line]
    if not entries:
        raise ConfigError([f"--sample-prompts {path}: holds no prompts"])
    try:
        return [_spec(i, e, config.sample_duration) for i, e in enumerate(entries)]
    except ValueError as exc:
        raise ConfigError([f"--sample-prompts {path}: {exc}"]) from None


def _engine_policy(settings, device: torch.device, precision: str):
    """The engine's policy for the training device, with everything that would
    move or transform the training model (offload, INT8, compile) off."""
    from engine.gpu.tiers import DeviceInfo, detect_device, resolve

    if device.type == "cuda":
        info = detect_device(settings.model_copy(update={"device": f"cuda:{device.index or 0}"}))
    else:
        info = DeviceInfo("cpu", None, "CPU", None, None, None, False)
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    return dataclasses.replace(
        resolve(settings, info),
        cpu_offload=False,
        dit_offload=False,
        quantization=None,
        torch_compile=False,
        dtype=names[precision],
    )


def render_samples(
    model: TrainingModel,
    specs: list[SongSpec],
    folder: Path,
    *,
    steps: int | None,
    offload_encoder: bool,
) -> list[Path]:
    """Sing each spec with the current adapter; returns the files written."""
    from engine.music_engine import MusicEngine
    from engine.settings import load_settings

    device = model.runtime.device
    if device.type not in ("cpu", "cuda"):
        log.warning("Samples are made on CUDA or the CPU only; skipped on %s", device)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    settings = load_settings(tracks_dir=folder)
    transformer = model.transformer
    was_training = transformer.training
    transformer.eval()
    paths = []
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            engine = MusicEngine(
                settings,
                policy=_engine_policy(settings, device, model.runtime.precision_name),
                pipeline=model.pipe,
                is_turbo=model.is_turbo,
            )
            for index, spec in enumerate(specs):
                out = folder / f"{index + 1:02d}-{spec.caption[:40]}.wav"
                out = out.with_name("".join(c if c.isalnum() or c in "-." else "-" for c in out.name))
                track = engine.generate(spec, out_path=out, fmt="wav", steps=steps)[0]
                paths.append(Path(track.path))
    finally:
        transformer.train(was_training)
        if offload_encoder:
            pipe = model.pipe
            move([pipe.vae, pipe.text_encoder, pipe.condition_encoder], torch.device("cpu"))
    return paths
