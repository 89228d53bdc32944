"""MusicEngine: a SongSpec in, a finished 48 kHz stereo track out.

The engine loads ACE-Step 1.5 once (through diffusers' `AceStepPipeline`),
applies the memory policy of the GPU tier (quantization, compile, placement),
and then makes song after song with the same models. Each song:

1. clamp duration and batch to the tier, and let the VRAM guard lower the
   batch or refuse before anything runs out of memory;
2. run the text encoder, condition encoder and DiT through the pipeline with
   `output_type="latent"` (progress reported per step), for one song or for a
   batch of different songs in one call (`generate_batch`, engine.song_batch);
3. decode the latents with the adaptive VAE decoder (chunks sized from free
   memory, with the three-step out-of-memory fallback);
4. loudness-normalise and encode to a file (Ogg/Opus for the radio).

`generate` blocks; the worker process calls it. One generation runs at a time.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch._dynamo.exc import TorchDynamoException

from engine import audio, placement, vram
from engine.adapters import AdapterInfo, AdapterManager
from engine.settings import Settings
from engine.song_batch import batch_duration, per_song_metas, pipeline_inputs
from engine.spec import SongSpec, Track
from engine.stage_clock import StageClock
from engine.tiers import EffectivePolicy, clamp_request, detect_device, resolve
from engine.track_output import BatchOutput, numbered_paths, track_file_name, write_tracks
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
        #: The VRAM guard before each song (`--boundary` turns it off to measure).
        self.vram_guard = True
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
        self._incoming_gb = vram.incoming_weights_gb(
            pipe, self.placement, self.quantization, self.policy.dtype
        )
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
        for warning in self.policy.warnings:
            log.warning("Unsafe setting: %s", warning)

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

        The tier's limit and the VRAM guard may lower `batch` (the tracks' warnings say
        so). `out_path` names the first file (the others get `-2`, `-3`, ... suffixes);
        by default files go to `TRACKS_DIR`.
        """
        self._check_request(fmt, steps)
        with self._lock:
            clamped = clamp_request(spec.duration, batch, self.policy)
            sampling = self._sampling(steps, guidance, shift)
            count, shared = self._guarded_batch(clamped.duration, clamped.batch, sampling)
            seed = spec.seed if spec.seed is not None else random.randrange(2**31)
            specs = [
                spec.model_copy(update={"seed": seed + i, "duration": clamped.duration})
                for i in range(count)
            ]
            paths = numbered_paths(out_path, count) if out_path is not None else None
            return self._sing(
                specs, paths, fmt, sampling, progress, [clamped.duration_warnings] * count,
                clamped.batch_warnings + shared, count,
            )  # fmt: skip

    def generate_batch(
        self,
        specs: list[SongSpec],
        *,
        fmt: str = "ogg",
        steps: int | None = None,
        progress: Progress | None = None,
    ) -> list[Track]:
        """Sing different songs together: as many per pipeline call as the tier's batch
        limit and the VRAM guard allow, the rest in further calls. Returns one Track per
        spec, in order; each keeps its own caption, lyrics, metas and seed (a random one
        when it has none). Songs of different lengths are made at the longest one's
        length and cut to their own (engine.song_batch)."""
        self._check_request(fmt, steps)
        if not specs:
            raise EngineError("generate_batch needs at least one song")
        with self._lock:
            songs, song_warnings = [], []
            for spec in specs:
                clamped = clamp_request(spec.duration, 1, self.policy)
                seed = spec.seed if spec.seed is not None else random.randrange(2**31)
                songs.append(spec.model_copy(update={"seed": seed, "duration": clamped.duration}))
                song_warnings.append(clamped.duration_warnings)
            size = min(len(songs), self.policy.max_batch)
            sampling = self._sampling(steps, None, None)
            size, shared = self._guarded_batch(batch_duration(songs), size, sampling)
            return self._sing(songs, None, fmt, sampling, progress, song_warnings, shared, size)

    def _check_request(self, fmt: str, steps: int | None) -> None:
        if fmt not in audio.CODECS:
            raise EngineError(
                f"unknown output format '{fmt}': allowed are {', '.join(audio.CODECS)}"
            )
        if steps is not None and not 1 <= steps <= 200:
            raise EngineError(f"steps={steps} is not allowed: use 1 to 200")

    def _sampling(self, steps, guidance, shift) -> SamplingDefaults:
        return SamplingDefaults(
            steps=steps or self.defaults.steps,
            guidance=guidance if guidance is not None else self.defaults.guidance,
            shift=shift or self.defaults.shift,
        )

    def _uses_cfg(self, sampling: SamplingDefaults) -> bool:
        return not self.is_turbo and sampling.guidance > 1.0

    def _guarded_batch(
        self, duration: int, batch: int, sampling: SamplingDefaults
    ) -> tuple[int, tuple[str, ...]]:
        """On a GPU, the batch the VRAM guard lets through (it refuses what cannot fit)."""
        free_gb = self._free_gb()
        if free_gb is None or not self.vram_guard:
            return batch, ()
        cfg = self._uses_cfg(sampling)
        free_gb -= self._incoming_gb  # weights offload brings in for the DiT stage
        decision = vram.guard(duration, batch, free_gb, xl=self.is_xl, cfg=cfg)
        return decision.batch, decision.warnings

    def _sing(
        self, specs, paths, fmt, sampling, progress, song_warnings, shared, size
    ) -> list[Track]:
        """Sing `specs` in pipeline calls of at most `size` songs each."""
        tracks: list[Track] = []
        for start in range(0, len(specs), size):
            chunk = slice(start, start + size)
            chunk_paths = paths[chunk] if paths is not None else [
                self.settings.tracks_dir / track_file_name(s, s.seed, fmt) for s in specs[chunk]
            ]  # fmt: skip
            output = self._sing_together(specs[chunk], sampling, progress, tuple(shared))
            tracks += write_tracks(output, specs[chunk], chunk_paths, fmt, song_warnings[chunk])
        return tracks

    def _sing_together(self, specs, sampling, progress, warnings) -> BatchOutput:
        """One pipeline call for `specs` (each with its seed), decoded to audio."""
        warnings = list(warnings)
        cfg = self._uses_cfg(sampling)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        def on_step(_pipe, index: int, _t, kwargs: dict) -> dict:
            if progress is not None:
                progress(index + 1, sampling.steps)
            return kwargs

        def sing() -> torch.Tensor:
            with per_song_metas(self.pipe, specs):
                return self.pipe(
                    **pipeline_inputs(specs),
                    num_inference_steps=sampling.steps,
                    guidance_scale=sampling.guidance,
                    shift=sampling.shift,
                    output_type="latent",
                    callback_on_step_end=on_step,
                ).audios

        duration = batch_duration(specs)
        clock = StageClock(self.pipe.condition_encoder, self.device)
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
                f"out of GPU memory while generating a {duration} s track (batch {len(specs)}): "
                "ask for a shorter track or turn on CPU_OFFLOAD/DIT_OFFLOAD"
            ) from exc
        finally:
            clock.close()
            self._after_stages()
        text_done = clock.text_done or dit_done
        self._check_finite(latents)

        free_gb = self._free_gb()
        try:
            waveforms, report = decode_adaptive(
                self.pipe.vae,
                latents.transpose(1, 2),
                self.device,
                chunk=vram.vae_chunk_frames(free_gb),
                overlap=vram.VAE_OVERLAP,
                overlapped=self.policy.overlapped_decode,
                free_memory=self._empty_cache,
            )
        finally:
            self.pipe.vae.to(self._vae_home)
        decoded = clock.now()
        warnings += [f"VAE decode fell back from {name}" for name in report.fallbacks]
        peak_mb = (
            torch.cuda.max_memory_allocated(self.device) / 1024**2
            if self.device.type == "cuda"
            else None
        )
        self._empty_cache()  # after every song, as the 8 GB guide does
        log.info(
            "Made %s (%d s, seeds %s, batch %d): text %.2fs, DiT %.2fs, VAE %.2fs",
            ", ".join(repr(s.title) for s in specs), duration,
            ", ".join(str(s.seed) for s in specs), len(specs),
            text_done - started, dit_done - text_done, decoded - dit_done,
        )  # fmt: skip
        return BatchOutput(
            waveforms=waveforms,
            sample_rate=int(self.pipe.vae.config.sampling_rate),
            stage_seconds={
                "text": text_done - started,
                "dit": dit_done - text_done,
                "vae": decoded - dit_done,
            },
            peak_memory_mb=peak_mb,
            settings=self._used_settings(sampling, cfg, len(specs), report),
            warnings=tuple(warnings),
            loudness_target=self.settings.loudness_target,
        )

    def _used_settings(self, sampling, cfg: bool, batch: int, report) -> dict[str, object]:
        active = self.adapters.active
        return {
            "steps": sampling.steps,
            "guidance": sampling.guidance if cfg else 1.0,
            "shift": sampling.shift,
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
            "adapter": active,
            "adapter_scale": self.adapters.loaded[active].scale if active else None,
            "loudness_target": self.settings.loudness_target,
        }

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

    @property
    def samples_per_frame(self) -> int:
        return hop_length(self.pipe.vae)
