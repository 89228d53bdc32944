"""Songwriter: a wish and a station's style in, a valid `SongSpec` out.

    songwriter = Songwriter(SongwriterConfig.from_settings(settings, policy))
    spec = songwriter.write("a sea shanty about deadlines", station_style)

`write` is a plain blocking call that never raises for bad input and never
returns an invalid spec. The GGUF model (by default the bundled Gemma 3 270M,
assembled on first use) is loaded lazily on the first call and reused; the
model itself is guarded by a lock, and everything else is per call, so one
`Songwriter` can be called from a worker thread while the music engine sings
the previous song in another (call it via `asyncio.to_thread` from async
code). Nothing is global: two `Songwriter`s are independent.

Each call makes at most two attempts with the model (the second with another
seed and a higher temperature); an answer is rejected when it is junk
(`engine.song_cleanup`) or a near-duplicate of a song the station played
recently. When the model is missing, fails to load, raises, times out, or
gives junk twice, `engine.template_songwriter` writes the spec instead and the
reason is logged and returned in `SongwriterResult.fallback_reason`.
"""

from __future__ import annotations

import difflib
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp

from engine.gguf_files import ModelFileError, find_model
from engine.gguf_model import (
    Completion,
    GGUFModel,
    ModelLoadError,
    Sampling,
    default_threads,
)
from engine.settings import Settings
from engine.song_cleanup import DurationRange, JunkOutputError, as_int, spec_from_answer
from engine.song_prompt import SongBrief, chat_prompt, few_shot_prompt, make_brief, song_grammar
from engine.spec import MAX_DURATION, MIN_DURATION, SongSpec, StationStyle
from engine.template_songwriter import template_spec
from engine.tiers import EffectivePolicy

log = logging.getLogger(__name__)

#: Attempts with the model before the template songwriter takes over.
ATTEMPTS = 2
#: Titles at least this similar to a recent one (difflib ratio) count as repeats;
#: captions only when equal, since a station's captions share its genre and mood tags.
NEAR_DUPLICATE = 0.85


@dataclass(frozen=True)
class SongwriterConfig:
    """What the songwriter needs from settings and the GPU tier.

    `model` is `LLM_MODEL_NAME` (a file in `models_dir` or a path); None means
    no model at all: the template songwriter writes every song (fast; for tests
    and trials of the rest of the radio).
    """

    model: str | None
    models_dir: Path
    gpu_layers: int = 0
    context_size: int = 2048
    threads: int = field(default_factory=default_threads)
    timeout: float = 60.0
    max_duration: int = MAX_DURATION
    max_tokens: int = 320

    @classmethod
    def from_settings(
        cls, settings: Settings, policy: EffectivePolicy | None = None
    ) -> SongwriterConfig:
        """Settings plus, when known, the tier's policy: its resolved GPU layers and
        its longest track. Without a policy the songwriter runs on the CPU."""
        return cls(
            model=settings.llm_model_name,
            models_dir=settings.models_dir,
            gpu_layers=policy.llm_gpu_layers if policy else (settings.llm_gpu_layers or 0),
            context_size=settings.llm_context_size,
            threads=settings.llm_threads or default_threads(),
            timeout=settings.llm_timeout,
            max_duration=policy.max_duration if policy else settings.max_length_max,
        )


@dataclass(frozen=True)
class SongwriterResult:
    """A spec and how it was made. `source` is "model" or "template"; `tokens`
    counts what the model generated over all attempts."""

    spec: SongSpec
    source: str
    attempts: int
    seconds: float
    fallback_reason: str | None = None
    rejected: tuple[str, ...] = ()
    tokens: int = 0


class Songwriter:
    """Writes `SongSpec`s with a GGUF model, falling back to templates. Thread-safe."""

    def __init__(self, config: SongwriterConfig):
        self.config = config
        self._load_lock = threading.Lock()
        self._model: GGUFModel | None = None
        self._load_error: str | None = None
        self._grammar = song_grammar()

    def load(self) -> str | None:
        """Load the model now rather than on the first song (a worker calls this at
        start-up). Returns why it cannot be used, or None when it is ready."""
        return self._loaded_model()[1]

    def write(
        self,
        theme: str = "",
        style: StationStyle | None = None,
        *,
        duration: int | None = None,
        seed: int | None = None,
        recent: Sequence[SongSpec] = (),
    ) -> SongSpec:
        """A spec for `theme` in `style`; see `compose`."""
        return self.compose(theme, style, duration=duration, seed=seed, recent=recent).spec

    def compose(
        self,
        theme: str = "",
        style: StationStyle | None = None,
        *,
        duration: int | None = None,
        seed: int | None = None,
        recent: Sequence[SongSpec] = (),
    ) -> SongwriterResult:
        """Write one song.

        `theme` is the listener's wish (untrusted, may be empty: auto mode);
        `style` the station's (default `StationStyle()`); `duration` a length the
        listener asked for, clamped to the station's and the tier's limit (without
        one the model proposes a length in the upper third of that range);
        `seed` makes the result repeatable (random when None); `recent` are the
        station's last songs, which this one must not repeat.
        """
        start = time.monotonic()
        style = style if isinstance(style, StationStyle) else StationStyle()
        seed = _seed(seed)
        durations = self._durations(style, duration)
        recent = [spec for spec in recent if isinstance(spec, SongSpec)]
        recent_titles = tuple(spec.title for spec in recent)
        brief = make_brief(
            theme if isinstance(theme, str) else "",
            style,
            duration=durations.high,
            seed=seed,
            recent_titles=recent_titles,
        )
        model, reason = self._loaded_model()
        deadline = time.monotonic() + self.config.timeout  # loading does not count
        rejected: list[str] = []
        attempts = tokens = 0
        while model is not None and attempts < ATTEMPTS:
            attempt_seed = (seed + attempts * 7919) % 2**63
            attempts += 1
            try:
                completion = self._ask(model, brief, attempt_seed, attempts, deadline)
            except Exception as exc:  # whatever llama.cpp raises, the song is still written
                reason = f"the model failed: {type(exc).__name__}: {exc}"
                break
            tokens += completion.tokens
            if completion.finish == "timeout":
                reason = f"the model timed out after {self.config.timeout:g} s (LLM_TIMEOUT)"
                break
            try:
                spec = spec_from_answer(completion.text, brief, durations, seed)
                repeat = _repeats(spec, recent)
                if repeat:
                    raise JunkOutputError(f"too close to the recent song {repeat!r}")
            except ValueError as exc:  # JunkOutputError, or a field SongSpec refused
                rejected.append(" ".join(str(exc).split())[:200])
                log.info("Songwriter attempt %d rejected: %s", attempts, rejected[-1])
                continue
            seconds = time.monotonic() - start
            return SongwriterResult(spec, "model", attempts, seconds, None, tuple(rejected), tokens)
        if model is not None and reason is None:
            reason = f"the model's answers were unusable ({'; '.join(rejected)})"
        if reason is not None:
            log.warning("Songwriter used the template: %s", reason)
        spec = template_spec(brief, durations, seed, recent_titles)
        seconds = time.monotonic() - start
        return SongwriterResult(
            spec, "template", attempts, seconds, reason, tuple(rejected), tokens
        )

    def _durations(self, style: StationStyle, requested: object) -> DurationRange:
        limit = max(MIN_DURATION, min(style.max_duration, self.config.max_duration))
        wanted = as_int(requested)
        if wanted is not None:
            fixed = max(MIN_DURATION, min(limit, wanted))
            return DurationRange(fixed, fixed)
        return DurationRange(max(MIN_DURATION, limit * 2 // 3), limit)

    def _ask(
        self, model: GGUFModel, brief: SongBrief, seed: int, attempt: int, deadline: float
    ) -> Completion:
        # Temperature varies with the seed (0.7-0.95) for variety, and rises on a retry.
        sampling = Sampling(
            seed=seed,
            temperature=0.7 + (seed % 6) * 0.05 + (attempt - 1) * 0.15,
            max_tokens=self.config.max_tokens,
        )
        chat = model.chat_template is not None
        if chat:
            prompt = chat_prompt(model.chat_template, brief, model.bos_token, model.eos_token)
        else:
            examples = 2 if model.context_size >= 1024 else 1
            prompt = few_shot_prompt(brief, seed, examples)
        completion = model.complete(prompt, self._grammar, sampling, deadline=deadline, chat=chat)
        log.debug(
            "Songwriter attempt %d: %d tokens in %.1f s (%s)",
            attempt,
            completion.tokens,
            completion.seconds,
            completion.finish,
        )
        return completion

    def _loaded_model(self) -> tuple[GGUFModel | None, str | None]:
        """The model, loading it on first use; or None and why it cannot be used.

        A failure is remembered, so a broken model costs one attempt per
        process, not one per song; restart after fixing the file.
        """
        with self._load_lock:
            if self._model is None and self._load_error is None and self.config.model:
                try:
                    path = find_model(self.config.model, self.config.models_dir)
                    if self.config.gpu_layers and not llama_cpp.llama_supports_gpu_offload():
                        log.warning(
                            "LLM_GPU_LAYERS=%d, but this llama-cpp-python was built without "
                            "GPU support: the songwriter runs on the CPU (see docs/songwriter.md)",
                            self.config.gpu_layers,
                        )
                    started = time.monotonic()
                    self._model = GGUFModel(
                        path,
                        context_size=self.config.context_size,
                        gpu_layers=self.config.gpu_layers,
                        threads=self.config.threads,
                    )
                    log.info(
                        "Songwriter model %s loaded in %.1f s: %s layers, LLM_GPU_LAYERS=%d, "
                        "%d threads, %s prompt",
                        path.name,
                        time.monotonic() - started,
                        self._model.layers or "?",
                        self.config.gpu_layers,
                        self.config.threads,
                        "chat-template" if self._model.chat_template else "few-shot",
                    )
                except (ModelFileError, ModelLoadError) as exc:
                    self._load_error = f"no songwriter model: {exc}"
            return self._model, self._load_error


def _seed(value: object) -> int:
    """A seed in SongSpec's range: the number given (wrapped), else a random one."""
    number = as_int(value)
    return secrets.randbits(63) if number is None else number % 2**63


def _repeats(spec: SongSpec, recent: Sequence[SongSpec]) -> str | None:
    """The title of a recent song that `spec` nearly repeats, if any."""
    for old in recent:
        title, old_title = spec.title.casefold(), old.title.casefold()
        if (
            title == old_title
            or difflib.SequenceMatcher(None, title, old_title).ratio() >= NEAR_DUPLICATE
            or spec.caption.casefold() == old.caption.casefold()
        ):
            return old.title
    return None
