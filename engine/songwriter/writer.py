"""Songwriter: a wish and a station's style in, a valid `SongSpec` out.

    songwriter = Songwriter(SongwriterConfig.from_settings(settings, policy))
    spec = songwriter.write("a sea shanty about deadlines", station_style)

`write` is a plain blocking call that never raises for bad input and never
returns an invalid spec. The GGUF model is loaded lazily on the first call
and reused; when the chosen model (`LLM_MODEL_NAME`, or the tier's
recommended one) cannot be loaded, the bundled Gemma 3 270M is tried next.
The model itself is guarded by a lock, and everything else is per call, so
one `Songwriter` can be called from a worker thread while the music engine
sings the previous song in another. Nothing is global.

Each call makes up to `ATTEMPTS` drafts (`engine.songwriter.drafting`), each with
another seed and a higher temperature, and keeps the first that passes every
gate (`engine.songwriter.gates`: form, language, rating, copying, theme, repeats).
When the model is missing, fails to load, raises, times out, or no draft
passes, `engine.songwriter.template` writes the spec instead, and the reason
is logged and returned in `SongwriterResult.fallback_reason`.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp

from engine.gpu.tiers import EffectivePolicy
from engine.settings import Settings
from engine.songwriter.cleanup import (
    DurationRange,
    JunkOutputError,
    as_int,
    assemble_lyrics,
    make_spec,
)
from engine.songwriter.content_rating import blocked_words
from engine.songwriter.drafting import Drafter
from engine.songwriter.gates import first_problem
from engine.songwriter.gguf_files import ModelFileError, bundled_model_name, find_model
from engine.songwriter.gguf_model import GGUFModel, ModelLoadError, default_threads
from engine.songwriter.language_id import identify
from engine.songwriter.models import choose_model
from engine.songwriter.prompt import make_brief
from engine.songwriter.template import template_spec
from engine.spec import MAX_DURATION, MIN_DURATION, SongSpec, StationStyle

log = logging.getLogger(__name__)

#: Drafts by the model before the template songwriter takes over.
ATTEMPTS = 3


@dataclass(frozen=True)
class SongwriterConfig:
    """What the songwriter needs from settings and the GPU tier.

    `model` is a GGUF file name in `models_dir` or a path; None means no model
    at all: the template songwriter writes every song (fast; for tests and
    trials of the rest of the radio). `fallback_model` is tried when `model`
    cannot be loaded (the bundled one, unless that is `model`).
    """

    model: str | None
    models_dir: Path
    gpu_layers: int = 0
    context_size: int = 2048
    threads: int = field(default_factory=default_threads)
    timeout: float = 60.0
    max_duration: int = MAX_DURATION
    fallback_model: str | None = None
    #: The most tokens one draft may write (a long song with a bridge needs about 300).
    max_tokens: int = 400

    @classmethod
    def from_settings(cls, settings: Settings, policy: EffectivePolicy | None = None) -> SongwriterConfig:
        """Settings plus, when known, the tier's policy: its resolved GPU layers, its
        longest track and the songwriter model it recommends (`LLM_MODEL_NAME=auto`).
        Without a policy the songwriter runs on the CPU."""
        choice = choose_model(settings, policy)
        return cls(
            model=choice.name,
            models_dir=settings.models_dir,
            gpu_layers=policy.llm_gpu_layers if policy else (settings.llm_gpu_layers or 0),
            context_size=settings.llm_context_size,
            threads=settings.llm_threads or default_threads(),
            timeout=settings.llm_timeout,
            max_duration=policy.max_duration if policy else settings.max_length_max,
            fallback_model=bundled_model_name() if choice.name != bundled_model_name() else None,
        )


@dataclass(frozen=True)
class SongwriterResult:
    """A spec and how it was made. `source` is "model" or "template"; `tokens`
    counts what the model generated over all attempts, `prompt_tokens` the
    prompt tokens it had to evaluate (the rest came from its cache) in
    `prompt_seconds`."""

    spec: SongSpec
    source: str
    attempts: int
    seconds: float
    fallback_reason: str | None = None
    rejected: tuple[str, ...] = ()
    tokens: int = 0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    theme_removed: tuple[str, ...] = ()


class Songwriter:
    """Writes `SongSpec`s with a GGUF model, falling back to templates. Thread-safe."""

    def __init__(self, config: SongwriterConfig):
        self.config = config
        self._load_lock = threading.Lock()
        self._drafter: Drafter | None = None
        self._load_error: str | None = None
        self.model_name: str | None = None
        #: Why models tried before the one in use could not be (e.g. the chosen one,
        #: when the bundled fallback writes instead).
        self.load_problems: tuple[str, ...] = ()

    def load(self) -> str | None:
        """Load the model, the language identifier and the word lists now rather
        than on the first song (the worker does, before it says it is ready).
        Returns why the model cannot be used, or None when it is ready."""
        identify("warm up")
        blocked_words("warm up", "en")
        return self._loaded()[1]

    def prepare(self, languages: Iterable[str]) -> float:
        """Evaluate the fixed part of each language's prompt now rather than in its
        first song (a few hundred tokens: about 2 s on 2 CPU cores). Returns the
        seconds it took; 0 without a model."""
        drafter, _ = self._loaded()
        if drafter is None:
            return 0.0
        return sum(drafter.prepare(language) for language in dict.fromkeys(languages))

    def write(self, theme: str = "", style: StationStyle | None = None, **kwargs) -> SongSpec:
        """A spec for `theme` in `style`; see `compose`."""
        return self.compose(theme, style, **kwargs).spec

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
        `style` the station's (default `StationStyle()`), with its language and
        rating; `duration` a length the listener asked for, clamped to the
        station's and the tier's limit (without one, a length in the upper
        third of that range); `seed` makes the result repeatable (random when
        None); `recent` are the station's last songs, which this one must not
        repeat.
        """
        start = time.monotonic()
        style = style if isinstance(style, StationStyle) else StationStyle()
        seed = _seed(seed)
        durations = self._durations(style, duration)
        recent = [spec for spec in recent if isinstance(spec, SongSpec)]
        brief = make_brief(
            theme if isinstance(theme, str) else "",
            style,
            duration=random.Random(seed).randint(durations.low, durations.high),
            recent_titles=tuple(spec.title for spec in recent),
        )
        drafter, reason = self._loaded()
        deadline = time.monotonic() + self.config.timeout  # loading does not count
        rejected: list[str] = []
        attempts = tokens = prompt_tokens = 0
        prompt_seconds = 0.0
        while drafter is not None and attempts < ATTEMPTS:
            attempt_seed = (seed + attempts * 7919) % 2**63
            attempts += 1
            try:
                draft = drafter.draft(
                    brief,
                    seed=attempt_seed,
                    attempt=attempts,
                    deadline=deadline,
                    title_only=brief.instrumental,
                    max_tokens=self.config.max_tokens,
                )
            except Exception as exc:  # whatever llama.cpp raises, the song is still written
                reason = f"the model failed: {type(exc).__name__}: {exc}"
                break
            tokens += draft.tokens
            prompt_tokens += draft.evaluated
            prompt_seconds += draft.prompt_seconds
            if draft.finish == "timeout":
                reason = f"the model timed out after {self.config.timeout:g} s (LLM_TIMEOUT)"
                break
            try:
                if draft.finish != "stop":
                    raise JunkOutputError(f"the draft was cut off ({draft.finish})")
                lyrics = "" if brief.instrumental else assemble_lyrics(draft.body, brief)
                spec = make_spec(draft.title, lyrics, brief, durations, seed)
                problem = first_problem(spec, brief, recent)
                if problem:
                    raise JunkOutputError(problem)
            except ValueError as exc:  # JunkOutputError, or a field SongSpec refused
                rejected.append(" ".join(str(exc).split())[:200])
                log.info("Songwriter draft %d rejected: %s", attempts, rejected[-1])
                continue
            return SongwriterResult(
                spec,
                "model",
                attempts,
                time.monotonic() - start,
                None,
                tuple(rejected),
                tokens,
                prompt_tokens,
                prompt_seconds,
                brief.theme_removed,
            )
        if drafter is not None and reason is None:
            reason = f"no draft passed the gates ({'; '.join(rejected)})"
        if reason is not None:
            log.warning("Songwriter used the template: %s", reason)
        spec = template_spec(brief, durations, seed, brief.recent_titles)
        return SongwriterResult(
            spec,
            "template",
            attempts,
            time.monotonic() - start,
            reason,
            tuple(rejected),
            tokens,
            prompt_tokens,
            prompt_seconds,
            brief.theme_removed,
        )

    def _durations(self, style: StationStyle, requested: object) -> DurationRange:
        limit = max(MIN_DURATION, min(style.max_duration, self.config.max_duration))
        wanted = as_int(requested)
        if wanted is not None:
            fixed = max(MIN_DURATION, min(limit, wanted))
            return DurationRange(fixed, fixed)
        return DurationRange(max(MIN_DURATION, limit * 2 // 3), limit)

    def _loaded(self) -> tuple[Drafter | None, str | None]:
        """The drafter, loading the model on first use; or None and why not.

        The chosen model first, then the fallback model. A failure is
        remembered, so a broken model costs one attempt per process, not one
        per song; restart after fixing the file.
        """
        with self._load_lock:
            if self._drafter is None and self._load_error is None:
                errors: list[str] = []
                for name in (self.config.model, self.config.fallback_model):
                    if not name:
                        continue
                    try:
                        self._drafter = Drafter(self._load(name))
                        self.model_name = name
                        break
                    except (ModelFileError, ModelLoadError) as exc:
                        errors.append(str(exc))
                        log.warning("Songwriter model %s cannot be used: %s", name, exc)
                self.load_problems = tuple(errors)
                if self._drafter is None and errors:
                    self._load_error = f"no songwriter model: {'; then '.join(errors)}"
            return self._drafter, self._load_error

    def _load(self, name: str) -> GGUFModel:
        path = find_model(name, self.config.models_dir)
        if self.config.gpu_layers and not llama_cpp.llama_supports_gpu_offload():
            log.warning(
                "LLM_GPU_LAYERS=%d, but this llama-cpp-python was built without GPU support: "
                "the songwriter runs on the CPU (see docs/songwriter.md)",
                self.config.gpu_layers,
            )
        started = time.monotonic()
        model = GGUFModel(
            path,
            context_size=self.config.context_size,
            gpu_layers=self.config.gpu_layers,
            threads=self.config.threads,
        )
        log.info(
            "Songwriter model %s loaded in %.1f s: %s layers, LLM_GPU_LAYERS=%d, %d threads, %s prompt",
            path.name,
            time.monotonic() - started,
            model.layers or "?",
            self.config.gpu_layers,
            self.config.threads,
            "chat-template" if model.chat_template else "few-shot",
        )
        return model


def _seed(value: object) -> int:
    """A seed in SongSpec's range: the number given (wrapped), else a random one."""
    number = as_int(value)
    return secrets.randbits(63) if number is None else number % 2**63
