"""Choosing the next token: sampling settings, steering, and the helpers
`engine.songwriter.gguf_model` runs at every step (repeat penalty, banned runs, top-p).

`Steering` adds nudges on top of the grammar: token runs that may not be
completed (the worked example's, the answer's own), logit boosts (the theme's
words, or maluses: English words in other languages' songs, the example's
words) and a pull towards a line break past a line's usual length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Logit added to the line break per character past `Steering.soft_line_chars`.
LINE_BREAK_PULL = 0.4


@dataclass(frozen=True)
class Sampling:
    """How to sample one answer."""

    seed: int
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.15
    max_tokens: int = 400


@dataclass(frozen=True)
class Steering:
    """Nudges on top of the grammar. `banned` holds token runs (of any length up to
    `ngram`) that may not be completed; with `no_repeats`, nor may a run of
    `ngram` tokens the answer has already written; `boosts` adds to the logits
    of tokens."""

    banned: frozenset[tuple[int, ...]] = frozenset()
    ngram: int = 4
    no_repeats: bool = False
    boosts: Mapping[int, float] = field(default_factory=dict)
    #: Past this many characters in a line, a line break grows more likely
    #: (`LINE_BREAK_PULL` per character), so lines end near where songs end them.
    soft_line_chars: int | None = None


def penalise(logits: np.ndarray, recent: list[int], penalty: float) -> None:
    """llama.cpp's repeat penalty, in place: recent tokens become less likely."""
    if not recent or penalty == 1.0:
        return
    ids = np.unique(np.asarray(recent))
    values = logits[ids]
    logits[ids] = np.where(values > 0, values / penalty, values * penalty)


def unbanned(allowed: np.ndarray, history: list[int], steering: Steering, written: set[tuple[int, ...]]) -> np.ndarray:
    """`allowed` without the tokens that would complete a banned (or, with
    `no_repeats`, an already written) n-gram; all of `allowed` when that would
    leave nothing (the grammar comes first)."""
    heads = [tuple(history[len(history) - n + 1 :]) for n in range(2, steering.ngram + 1)]
    banned = steering.banned

    def free(token: int) -> bool:
        if any((*head, token) in banned for head in heads):
            return False
        return (*heads[-1], token) not in written

    keep = np.fromiter((free(int(t)) for t in allowed), dtype=bool, count=allowed.size)
    return allowed[keep] if keep.any() else allowed


def sample(logits: np.ndarray, allowed: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """Temperature and top-p sampling among `allowed` (sorted, most likely first)."""
    if allowed.size == 0:
        raise RuntimeError("the grammar allows no token")  # cannot happen with a valid grammar
    if sampling.temperature <= 0:
        return int(allowed[0])
    scaled = logits[allowed].astype(np.float64) / sampling.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    keep = max(1, int(np.searchsorted(np.cumsum(probs), sampling.top_p)) + 1)
    probs = probs[:keep] / probs[:keep].sum()
    return int(allowed[rng.choice(keep, p=probs)])
