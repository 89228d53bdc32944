"""MusicEngine: SongSpecs in, finished 48 kHz stereo tracks out.

The engine loads ACE-Step 1.5 once (through diffusers' `AceStepPipeline`), applies
the GPU tier's memory policy (quantization, compile, placement), and then makes
song after song with the same models, in numbered stages as a diffusers pipeline
reads (`generate`, `generate_batch`):

1. check the inputs (`song_plan.check_inputs`);
2. plan: clamp lengths and batch to the tier, let the VRAM guard lower the batch
   or refuse, fix seeds and files: a frozen `SongPlan`;
3. denoise: text encoder, condition encoder and DiT, `output_type="latent"`, with
   progress per step; several different songs per call (engine.song_batch);
4. decode: the adaptive VAE decode (windows sized from free memory, the
   out-of-memory fallback ladder);
5. encode: loudness and the file (Ogg/Opus for the radio), each song cut to its length.

Generation blocks; the worker process calls it. One generation runs at a time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch._dynamo.exc import TorchDynamoException

from engine.adapters.manager import AdapterInfo, AdapterManager
from engine.errors import GenerationError, OutOfMemoryError
from engine.gpu import placement, vram
from engine.gpu.tiers import EffectivePolicy, clamp_request, detect_device, resolve
from engine.settings import Settings
from engine.song_batch import batch_duration, per_song_metas, pipeline_inputs
from engine.song_plan import (
    BASE_SAMPLING,
    TURBO_SAMPLING,
    Decoded,
    Denoised,
    PipelineCall,
    Sampling,
    SongPlan,
    check_finite,
    check_inputs,
    choose_sampling,
)
from engine.spec import SongSpec, Track
from engine.stage_clock import StageClock
from engine.track_output import BatchOutput, numbered_paths, track_file_name, write_tracks
from engine.vae_decode import DecodeReport, decode_adaptive

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


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
        self.defaults = TURBO_SAMPLING if self.is_turbo else BASE_SAMPLING
        self.placement = placement.choose_placement(
            on_accelerator=self.policy.device.kind == "cuda",
            cpu_offload=self.policy.cpu_offload,
            dit_offload=self.policy.dit_offload,
            streamed=self.policy.streamed_offload,
        )
        self._prepare()
        self.adapters = AdapterManager(self.pipe, self.device)

    def _load(self, checkpoint: Path | None, variant: str | None):
        from engine.checkpoint.load import converted_cache_dir, find_checkpoint, load_pipeline

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
        if self.quantization == "int8" and not placement.try_quantize_int8(pipe.transformer):
            self.quantization = None
        self.compiled = self.policy.torch_compile
        if self.compiled:
            placement.compile_modules([pipe.transformer])
        self._offloader = placement.apply_placement(pipe, self.placement, self.device)
        self._incoming_gb = vram.incoming_weights_gb(pipe, self.placement, self.quantization, self.policy.dtype)
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

    # --- generation, in numbered stages as a diffusers pipeline reads ---------------
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
        check_inputs(fmt, steps)  # 1. check the inputs
        with self._lock:
            clamped = clamp_request(spec.duration, batch, self.policy)  # 2. plan
            sampling = choose_sampling(self.defaults, steps, guidance, shift)
            count, guarded = self._guarded_batch(clamped.duration, clamped.batch, sampling)
            seed = spec.seed if spec.seed is not None else random.randrange(2**31)
            specs = [spec.model_copy(update={"seed": seed + i, "duration": clamped.duration}) for i in range(count)]
            paths = numbered_paths(out_path, count) if out_path is not None else None
            plan = self._plan(specs, paths, fmt, sampling, [clamped.duration_warnings] * count, count)
            plan = replace(plan, shared_warnings=clamped.batch_warnings + guarded)
            return self._carry_out(plan, progress)  # 3-5. denoise, decode, encode

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
        check_inputs(fmt, steps)  # 1. check the inputs
        if not specs:
            raise GenerationError("generate_batch needs at least one song")
        with self._lock:
            songs, song_warnings = [], []  # 2. plan
            for spec in specs:
                clamped = clamp_request(spec.duration, 1, self.policy)
                seed = spec.seed if spec.seed is not None else random.randrange(2**31)
                songs.append(spec.model_copy(update={"seed": seed, "duration": clamped.duration}))
                song_warnings.append(clamped.duration_warnings)
            sampling = choose_sampling(self.defaults, steps, None, None)
            size = min(len(songs), self.policy.max_batch)
            size, guarded = self._guarded_batch(batch_duration(songs), size, sampling)
            plan = replace(self._plan(songs, None, fmt, sampling, song_warnings, size), shared_warnings=guarded)
            return self._carry_out(plan, progress)  # 3-5. denoise, decode, encode

    def _plan(
        self,
        specs: list[SongSpec],
        paths: list[Path] | None,
        fmt: str,
        sampling: Sampling,
        song_warnings: list[tuple[str, ...]],
        songs_per_call: int,
    ) -> SongPlan:
        if paths is None:
            paths = [self.settings.tracks_dir / track_file_name(s, s.seed, fmt) for s in specs]
        return SongPlan(
            specs=tuple(specs),
            paths=tuple(paths),
            fmt=fmt,
            sampling=sampling,
            cfg=not self.is_turbo and sampling.guidance > 1.0,
            songs_per_call=max(1, songs_per_call),
            song_warnings=tuple(song_warnings),
            shared_warnings=(),
        )

    def _guarded_batch(self, duration: int, batch: int, sampling: Sampling) -> tuple[int, tuple[str, ...]]:
        """On a GPU, the batch the VRAM guard lets through (it refuses what cannot fit)."""
        free_gb = self._free_gb()
        if free_gb is None or not self.vram_guard:
            return batch, ()
        cfg = not self.is_turbo and sampling.guidance > 1.0
        free_gb -= self._incoming_gb  # weights offload brings in for the DiT stage
        decision = vram.guard(duration, batch, free_gb, xl=self.is_xl, cfg=cfg)
        return decision.batch, decision.warnings

    def _carry_out(self, plan: SongPlan, progress: Progress | None) -> list[Track]:
        """Stages 3 to 5 for each pipeline call of the plan."""
        tracks: list[Track] = []
        for call in plan.calls():
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            denoised = self._denoise(call.specs, plan, progress)
            decoded = self._decode(denoised)
            tracks += self._encode(call, plan, denoised, decoded)
        return tracks

    def _denoise(self, specs: tuple[SongSpec, ...], plan: SongPlan, progress: Progress | None) -> Denoised:
        """3. Text encoder, condition encoder and DiT: the songs' latents."""
        warnings = list(plan.shared_warnings)
        sampling = plan.sampling

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
            raise OutOfMemoryError(
                f"out of GPU memory while generating a {batch_duration(specs)} s track (batch {len(specs)}): "
                "ask for a shorter track or turn on CPU_OFFLOAD/DIT_OFFLOAD"
            ) from exc
        finally:
            clock.close()
            self._after_stages()
        check_finite(latents, self.policy.dtype)
        text_done = clock.text_done or dit_done
        return Denoised(latents, text_done - started, dit_done - text_done, tuple(warnings))

    def _decode(self, denoised: Denoised) -> Decoded:
        """4. The adaptive VAE decode: latents to 48 kHz stereo waveforms."""
        started = time.perf_counter()
        try:
            waveforms, report = decode_adaptive(
                self.pipe.vae,
                denoised.latents.transpose(1, 2),
                self.device,
                chunk=vram.vae_chunk_frames(self._free_gb()),
                overlap=vram.VAE_OVERLAP,
                overlapped=self.policy.overlapped_decode,
                free_memory=self._empty_cache,
            )
        finally:
            self.pipe.vae.to(self._vae_home)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        peak_mb = torch.cuda.max_memory_allocated(self.device) / 1024**2 if self.device.type == "cuda" else None
        self._empty_cache()  # after every song, as the 8 GB guide does
        return Decoded(waveforms, report, time.perf_counter() - started, peak_mb)

    def _encode(self, call: PipelineCall, plan: SongPlan, denoised: Denoised, decoded: Decoded) -> list[Track]:
        """5. Loudness and encoding: each song to its file, cut to its own length."""
        report = decoded.report
        log.info(
            "Made %s (%d s, seeds %s, batch %d): text %.2fs, DiT %.2fs, VAE %.2fs",
            ", ".join(repr(s.title) for s in call.specs),
            batch_duration(call.specs),
            ", ".join(str(s.seed) for s in call.specs),
            len(call.specs),
            denoised.text_seconds,
            denoised.dit_seconds,
            decoded.seconds,
        )
        output = BatchOutput(
            waveforms=decoded.waveforms,
            sample_rate=int(self.pipe.vae.config.sampling_rate),
            stage_seconds={"text": denoised.text_seconds, "dit": denoised.dit_seconds, "vae": decoded.seconds},
            peak_memory_mb=decoded.peak_memory_mb,
            settings=self._used_settings(plan.sampling, plan.cfg, len(call.specs), report),
            warnings=denoised.warnings + tuple(f"VAE decode fell back from {name}" for name in report.fallbacks),
            loudness_target=self.settings.loudness_target,
        )
        return write_tracks(output, call.specs, call.paths, plan.fmt, call.song_warnings)

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

    def _used_settings(self, sampling: Sampling, cfg: bool, batch: int, report: DecodeReport) -> dict[str, object]:
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
