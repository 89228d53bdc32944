"""MusicEngine: a SongSpec in, a finished 48 kHz stereo track out.

The engine loads ACE-Step 1.5 once (through diffusers' `AceStepPipeline`),
applies the memory policy of the GPU tier (quantization, compile, placement),
and then makes song after song with the same models. Each song:

1. clamp duration and batch to the tier, and let the VRAM guard lower the
   batch or refuse before anything runs out of memory;
2. run the text encoder, condition encoder and DiT through the pipeline with
   `output_type="latent"` (progress reported per step);
3. decode the latents with the adaptive VAE decoder (chunks sized from free
   memory, with the three-step out-of-memory fallback);
4. loudness-normalise and encode to a file (Ogg/Opus for the radio).

`generate` blocks; the worker process calls it. One generation runs at a time.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch._dynamo.exc import TorchDynamoException

from engine import audio, placement, vram
from engine.adapters import AdapterInfo, AdapterManager
from engine.settings import Settings
from engine.spec import SongSpec, Track
from engine.tiers import EffectivePolicy, clamp_request, detect_device, resolve
from engine.vae_decode import decode_adaptive, hop_length

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int
    guidance: float
    shift: float


TURBO_DEFAULTS = SamplingDefaults(steps=8, guidance=1.0, shift=3.0)
BASE_DEFAULTS = SamplingDefaults(steps=32, guidance=7.0, shift=3.0)


class EngineError(RuntimeError):
    """A song could not be made; the message says why."""


def track_file_name(spec: SongSpec, seed: int, suffix: str) -> str:
    """`20261121-093000-rainy-night-in-tokyo-1234-5f3a9c.ogg`: sortable, safe on any
    filesystem, and unique: the same song and seed made twice (e.g. with and without an
    adapter) never overwrites the first file."""
    slug = re.sub(r"[^a-z0-9]+", "-", spec.title.lower()).strip("-")[:40] or "song"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{slug}-{seed}-{secrets.token_hex(3)}.{suffix}"


class _StageClock:
    """Splits the pipeline call into text encoding and DiT by noting when the
    condition encoder (the last text stage) finishes. The hook sits on the condition
    encoder, not on the DiT, so it never breaks a compiled DiT's graph."""

    def __init__(self, condition_encoder: torch.nn.Module, device: torch.device):
        self.device = device
        self.text_done: float | None = None
        self._handle = condition_encoder.register_forward_hook(self._mark)

    def _mark(self, _module, _args, _output) -> None:
        self.text_done = self.now()

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def close(self) -> None:
        self._handle.remove()


class MusicEngine:
    """Loads the models once and sings `SongSpec`s. See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        policy: EffectivePolicy | None = None,
        checkpoint: Path | None = None,
        variant: str | None = None,
        pipeline=None,
        is_turbo: bool | None = None,
        is_xl: bool = False,
        device: torch.device | None = None,
    ):
        """`device` overrides where the models run (by default the policy's device);
        the tests use it to run a GPU tier's whole memory policy on the CPU."""
        self.settings = settings
        self.policy = policy or resolve(settings, detect_device(settings))
        self.device = device or torch.device(self.policy.device.torch_device)
        self._lock = threading.Lock()
        if pipeline is None:
            pipeline, is_turbo, is_xl = self._load(checkpoint, variant)
        self.pipe = pipeline
        self.is_turbo = bool(pipeline.is_turbo if is_turbo is None else is_turbo)
        self.is_xl = is_xl
        self.defaults = TURBO_DEFAULTS if self.is_turbo else BASE_DEFAULTS
        self.placement = placement.choose_placement(
            on_accelerator=self.policy.device.kind == "cuda",
            cpu_offload=self.policy.cpu_offload,
            dit_offload=self.policy.dit_offload,
            streamed=self.policy.streamed_offload,
        )
        self._prepare()
        self.adapters = AdapterManager(self.pipe, self.device)

    def _load(self, checkpoint: Path | None, variant: str | None):
        from engine.models import converted_cache_dir, find_checkpoint, load_pipeline

        source = find_checkpoint(self.settings, variant=variant, path=checkpoint)
        pipe, info = load_pipeline(
            source,
            dtype=self.policy.dtype,
            attention=self.policy.attention,
            cache_dir=converted_cache_dir(self.settings),
        )
        log.info("Loaded %s", info.describe())
        return pipe, info.is_turbo, info.is_xl

    def _prepare(self) -> None:
        """Quantize, compile and place the models, once."""
        pipe = self.pipe
        self.quantization = self.policy.quantization
        if self.quantization == "int8":
            try:
                placement.quantize_int8(pipe.transformer)
            except Exception as exc:  # torchao missing or unsupported here: run unquantized
                log.warning(
                    "QUANTIZATION=int8 could not be applied (%s: %s); the DiT runs unquantized. "
                    "Set QUANTIZATION=none to skip the attempt.",
                    type(exc).__name__,
                    exc,
                )
                self.quantization = None
        self.compiled = self.policy.torch_compile
        if self.compiled:
            placement.compile_modules([pipe.transformer])
        self._offloader = placement.apply_placement(pipe, self.placement, self.device)
        self._vae_home = self.device if self.placement == "resident" else torch.device("cpu")
        pipe.vae.to(self._vae_home)
        pipe.set_progress_bar_config(disable=True)
        log.info(
            "Engine ready: %s on %s (%s, %s), placement %s, quantization %s, compile %s",
            "turbo" if self.is_turbo else "base/sft",
            self.device,
            self.policy.tier.name,
            self.policy.dtype,
            self.placement,
            self.quantization or "none",
            "on" if self.policy.torch_compile else "off",
        )

    # --- adapters -----------------------------------------------------------
    def load_adapter(self, path: Path, name: str | None = None, scale: float = 1.0) -> AdapterInfo:
        with self._lock:
            return self.adapters.load(path, name, scale)

    def switch_adapter(self, name: str | None, scale: float | None = None) -> None:
        with self._lock:
            self.adapters.switch(name, scale)

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            self.adapters.unload(name)

    # --- generation ---------------------------------------------------------
    def _free_gb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return vram.free_vram_gb(
            self.device.index or 0,
            self.policy.device.vram_gb if self.policy.device.simulated else None,
        )

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def generate(
        self,
        spec: SongSpec,
        *,
        out_path: Path | None = None,
        fmt: str = "ogg",
        batch: int = 1,
        steps: int | None = None,
        guidance: float | None = None,
        shift: float | None = None,
        progress: Progress | None = None,
    ) -> list[Track]:
        """Sing `spec` `batch` times (seeds `seed`, `seed+1`, ...); returns one Track each.

        `out_path` names the first file (the others get `-2`, `-3`, ... suffixes);
        by default files go to `TRACKS_DIR`.
        """
        if fmt not in audio.CODECS:
            raise EngineError(
                f"unknown output format '{fmt}': allowed are {', '.join(audio.CODECS)}"
            )
        with self._lock:
            return self._generate(spec, out_path, fmt, batch, steps, guidance, shift, progress)

    def _generate(
        self, spec, out_path, fmt, batch, steps, guidance, shift, progress
    ) -> list[Track]:
        clamped = clamp_request(spec.duration, batch, self.policy)
        warnings = list(clamped.warnings)
        steps = steps or self.defaults.steps
        guidance = guidance if guidance is not None else self.defaults.guidance
        shift = shift or self.defaults.shift
        cfg = not self.is_turbo and guidance > 1.0
        free_gb = self._free_gb()
        batch = clamped.batch
        if free_gb is not None:
            decision = vram.guard(clamped.duration, batch, free_gb, xl=self.is_xl, cfg=cfg)
            batch = decision.batch
            warnings += decision.warnings
        duration = clamped.duration
        seed = spec.seed if spec.seed is not None else random.randrange(2**31)
        if not 1 <= steps <= 200:
            raise EngineError(f"steps={steps} is not allowed: use 1 to 200")

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        def on_step(_pipe, index: int, _t, kwargs: dict) -> dict:
            if progress is not None:
                progress(index + 1, steps)
            return kwargs

        def sing() -> torch.Tensor:
            generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)]
            return self.pipe(
                prompt=[spec.caption] * batch,
                lyrics=[spec.lyrics] * batch,
                vocal_language=[spec.language] * batch,
                audio_duration=float(duration),
                num_inference_steps=steps,
                guidance_scale=guidance,
                shift=shift,
                generator=generators,
                bpm=spec.bpm,
                keyscale=spec.key,
                timesignature=spec.beats_per_bar,
                output_type="latent",
                callback_on_step_end=on_step,
            ).audios

        clock = _StageClock(self.pipe.condition_encoder, self.device)
        started = clock.now()
        try:
            try:
                latents = sing()
            except TorchDynamoException as exc:
                if not self.compiled:
                    raise
                warnings.append(self._stop_compiling(exc))
                started, clock.text_done = clock.now(), None
                latents = sing()
            dit_done = clock.now()
        except torch.OutOfMemoryError as exc:
            raise EngineError(
                f"out of GPU memory while generating a {duration} s track (batch {batch}): "
                "ask for a shorter track or turn on CPU_OFFLOAD/DIT_OFFLOAD"
            ) from exc
        finally:
            clock.close()
            self._after_stages()
        text_done = clock.text_done or dit_done
        self._check_finite(latents)

        chunk = vram.vae_chunk_frames(free_gb)
        try:
            waveforms, report = decode_adaptive(
                self.pipe.vae,
                latents.transpose(1, 2),
                self.device,
                chunk=chunk,
                overlap=vram.VAE_OVERLAP,
                overlapped=self.policy.overlapped_decode,
                free_memory=self._empty_cache,
            )
        finally:
            self.pipe.vae.to(self._vae_home)
        decoded = clock.now()
        warnings += [f"VAE decode fell back from {name}" for name in report.fallbacks]

        sample_rate = int(self.pipe.vae.config.sampling_rate)
        samples = round(duration * sample_rate)
        peak_mb = (
            torch.cuda.max_memory_allocated(self.device) / 1024**2
            if self.device.type == "cuda"
            else None
        )
        used = {
            "steps": steps,
            "guidance": guidance if cfg else 1.0,
            "shift": shift,
            "batch": batch,
            "device": str(self.device),
            "tier": self.policy.tier.name,
            "dtype": self.policy.dtype,
            "attention": self.policy.attention,
            "placement": self.placement,
            "quantization": self.quantization or "none",
            "torch_compile": self.compiled,
            "vae_decode": report.strategy,
            "vae_chunk_frames": report.chunk_frames,
            "adapter": self.adapters.active,
            "adapter_scale": self.adapters.loaded[self.adapters.active].scale
            if self.adapters.active
            else None,
            "loudness_target": self.settings.loudness_target,
        }
        tracks = []
        for index in range(batch):
            wave = _anti_clip(waveforms[index, :, :samples].numpy())
            path = self._output_path(spec, seed + index, fmt, out_path, index)
            encode_start = time.perf_counter()
            encoded = audio.encode(
                wave,
                path,
                sample_rate=sample_rate,
                title=spec.title,
                artist="AI Radio",
                target_lufs=self.settings.loudness_target,
                fmt=fmt,
            )
            timings = {
                "text": text_done - started,
                "dit": dit_done - text_done,
                "vae": decoded - dit_done,
                "encode": time.perf_counter() - encode_start,
            }
            tracks.append(
                Track(
                    path=str(encoded.path),
                    spec=spec.model_copy(update={"seed": seed + index, "duration": duration}),
                    duration=encoded.duration,
                    sample_rate=sample_rate,
                    seed=seed + index,
                    timings=timings,
                    peak_memory_mb=peak_mb,
                    settings=used,
                    warnings=tuple(warnings),
                )
            )
        log.info(
            "Made '%s' (%d s, seed %d): text %.2fs, DiT %.2fs, VAE %.2fs",
            spec.title,
            duration,
            seed,
            text_done - started,
            dit_done - text_done,
            decoded - dit_done,
        )
        return tracks

    def _check_finite(self, latents: torch.Tensor) -> None:
        """NaN or infinite latents would decode to noise or silence; stop the song and
        say why instead. float16 overflowing is the usual cause (GPUs before Ampere)."""
        if torch.isfinite(latents).all():
            return
        hint = (
            "float16 overflows on some songs: set PRECISION=fp32 in .env (more memory)"
            if self.policy.dtype == "float16"
            else "the checkpoint or the active adapter may be damaged"
        )
        raise EngineError(f"the DiT produced NaN or infinite values in {self.policy.dtype}; {hint}")

    def _stop_compiling(self, error: Exception) -> str:
        """torch.compile failed on this system (no compiler, an old driver, an op it
        cannot trace): run the DiT eagerly from now on rather than fail every song."""
        placement.uncompile(self.pipe.transformer)
        self.compiled = False
        cause = getattr(error, "inner_exception", None) or error.__cause__ or error
        summary = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        message = f"TORCH_COMPILE failed ({summary}); the DiT runs without compiling from now on"
        log.warning("%s. Set TORCH_COMPILE=false to skip the attempt.", message)
        return message

    def _after_stages(self) -> None:
        """Send offloaded models back to the CPU between songs."""
        if self._offloader is not None:
            self._offloader.release()
        if self.placement == "dit-offload":
            self.pipe.maybe_free_model_hooks()

    def _output_path(
        self, spec: SongSpec, seed: int, fmt: str, out_path: Path | None, index: int
    ) -> Path:
        if out_path is None:
            return self.settings.tracks_dir / track_file_name(spec, seed, fmt)
        out_path = Path(out_path)
        return (
            out_path
            if index == 0
            else out_path.with_name(f"{out_path.stem}-{index + 1}{out_path.suffix}")
        )

    @property
    def samples_per_frame(self) -> int:
        return hop_length(self.pipe.vae)


def _anti_clip(wave: np.ndarray) -> np.ndarray:
    """Scale down a waveform whose peak exceeds full scale (the pipeline's own rule)."""
    peak = float(np.abs(wave).max(initial=0.0))
    return wave / peak if peak > 1.0 else wave
