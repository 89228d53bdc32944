"""A station's taste as the songwriter takes it: which tags, tempo and mode to lean to.

The bot learns what a server's listeners like (bot.taste.profile) and hands each auto
song a `TasteLean` inside its `StationStyle`: plain data that crosses the
process boundary as JSON. Both songwriters apply it the same way, with the
helpers here:

- tags: a preferred tag is chosen first where the songwriter picks among
  options (the template's instruments and voices), and added to the caption
  when the model left it out; an avoided tag is not chosen and is taken out
  of a caption (never the station's own genre or mood words);
- tempo: the bpm range narrows to the preferred band where it overlaps the
  genre's range, and avoided bands are cut out while something is left;
- mode: the template picks keys in the preferred mode (major or minor).

A lean never widens what the station allows: it only chooses within the
genre's range and the station's words. Tags in a lean come from the station's
own earlier captions (model output): they are cleaned again before use
(`engine.songwriter.prompt.prompt_safe`, `engine.songwriter.cleanup.clean_caption`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from engine.spec import TasteLean


def _norm(tag: str) -> str:
    return " ".join(tag.casefold().split())


def is_avoided(tag: str, lean: TasteLean | None) -> bool:
    return lean is not None and _norm(tag) in {_norm(t) for t in lean.avoid}


def lean_choice(options: Sequence[str], k: int, lean: TasteLean | None, rng: random.Random) -> list[str]:
    """`k` of `options`: preferred ones first, avoided ones only when nothing else is
    left. Without a lean this is exactly `rng.sample(options, k)`."""
    k = min(k, len(options))
    if lean is None or lean.empty:
        return rng.sample(list(options), k)
    wanted = {_norm(t) for t in lean.prefer}
    preferred = [o for o in options if _norm(o) in wanted]
    neutral = [o for o in options if o not in preferred and not is_avoided(o, lean)]
    avoided = [o for o in options if is_avoided(o, lean)]
    rng.shuffle(preferred)
    rng.shuffle(neutral)
    rng.shuffle(avoided)
    return (preferred + neutral + avoided)[:k]


def lean_bpm_range(low: int, high: int, lean: TasteLean | None) -> tuple[int, int]:
    """The part of `low..high` the lean prefers; the whole range when it has no say."""
    if lean is None:
        return low, high
    if lean.bpm is not None:
        overlap = (max(low, lean.bpm.low), min(high, lean.bpm.high))
        if overlap[0] <= overlap[1]:
            low, high = overlap
    # Cut out avoided bands; keep the widest piece that is left.
    pieces = [(low, high)]
    for band in lean.avoid_bpm:
        cut = []
        for a, b in pieces:
            if band.high < a or band.low > b:
                cut.append((a, b))
                continue
            if a < band.low:
                cut.append((a, band.low - 1))
            if band.high < b:
                cut.append((band.high + 1, b))
        pieces = cut or pieces
    return max(pieces, key=lambda piece: piece[1] - piece[0])


def lean_bpm(bpm: int, lean: TasteLean | None) -> int:
    """A bpm the model chose, moved into the preferred band when it is outside it."""
    if lean is None or lean.bpm is None:
        return bpm
    return max(lean.bpm.low, min(lean.bpm.high, bpm))


def lean_keys(keys: Sequence[str], lean: TasteLean | None) -> list[str]:
    """The keys in the preferred mode ("A minor"), or all of them."""
    if lean is None or lean.mode is None:
        return list(keys)
    return [key for key in keys if key.endswith(lean.mode)] or list(keys)


def lean_tags(tags: Sequence[str], lean: TasteLean | None, keep: Sequence[str]) -> list[str]:
    """Caption tags without the avoided ones (except those in `keep`: the station's
    genre and mood), followed by the preferred tags that were missing."""
    if lean is None:
        return list(tags)
    kept = {_norm(t) for t in keep}
    out = [t for t in tags if _norm(t) in kept or not is_avoided(t, lean)]
    present = {_norm(t) for t in out}
    out += [t for t in lean.prefer if _norm(t) not in present and not is_avoided(t, lean)]
    return out
