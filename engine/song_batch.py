"""Several different songs in one pipeline call.

diffusers' `AceStepPipeline` takes a list of captions, lyrics and vocal
languages, one per sample, but one `bpm`, `keyscale`, `timesignature` and
`audio_duration` for the whole batch: it writes the same metas into every
prompt. A radio batch holds different songs, so `per_song_metas` gives each
prompt its own metas (bpm, key, time signature and its own duration) while the
pipeline formats it, exactly as a call with that one song would.

Length. One batch has one latent length: the longest song's. Each prompt still
says its own song's duration (the model was trained to end a song where its
metas say), and after decoding each shorter song is cut to its own length with
a short fade-out, so it never ends in a click. Making a short song at a long
song's length costs the difference in compute, so the station batches only
songs of similar length (`engine.worker.protocol.can_share_batch`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from engine.spec import SongSpec

#: Seconds of fade-out at the end of a song cut shorter than its batch.
CUT_FADE_SECONDS = 0.5


def batch_duration(specs: Sequence[SongSpec]) -> int:
    """The length the batch is made at: its longest song's."""
    return max(spec.duration for spec in specs)


def pipeline_inputs(specs: Sequence[SongSpec]) -> dict:
    """The per-song arguments of one `AceStepPipeline` call (each spec has its seed)."""
    return {
        "prompt": [spec.caption for spec in specs],
        "lyrics": [spec.lyrics for spec in specs],
        "vocal_language": [spec.language for spec in specs],
        "audio_duration": float(batch_duration(specs)),
        "generator": [torch.Generator("cpu").manual_seed(spec.seed) for spec in specs],
    }


@contextmanager
def per_song_metas(pipe, specs: Sequence[SongSpec]) -> Iterator[None]:
    """While the pipeline formats its prompts, give prompt `i` the metas of `specs[i]`.

    `encode_prompt` formats the samples in order, once per call (text2music), so
    the formatter is called with sample 0, 1, ... and checks that the caption it
    is given is that sample's.
    """
    original = type(pipe)._format_prompt
    order = itertools.cycle(range(len(specs)))

    def format_prompt(*, prompt: str, audio_duration: float, **kwargs) -> tuple[str, str]:
        spec = specs[next(order)]
        if prompt != spec.caption:
            raise RuntimeError("the pipeline formatted its prompts out of order")
        kwargs.update(bpm=spec.bpm, keyscale=spec.key, timesignature=spec.beats_per_bar)
        return original(pipe, prompt=prompt, audio_duration=float(spec.duration), **kwargs)

    pipe._format_prompt = format_prompt
    try:
        yield
    finally:
        del pipe._format_prompt


def cut_to_length(wave: np.ndarray, seconds: float, sample_rate: int, batch_seconds: float):
    """`wave` [channels, samples] trimmed to `seconds`; a song cut shorter than its
    batch's length fades out over its last `CUT_FADE_SECONDS`."""
    samples = round(seconds * sample_rate)
    wave = wave[:, :samples]
    if seconds < batch_seconds:
        fade = min(round(CUT_FADE_SECONDS * sample_rate), wave.shape[-1])
        wave = wave.copy()
        wave[:, wave.shape[-1] - fade :] *= np.linspace(1.0, 0.0, fade, dtype=wave.dtype)
    return wave
