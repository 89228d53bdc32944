"""`python -m engine write`: write one song spec from the command line."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from engine.settings import load_settings
from engine.spec import LANGUAGES, RATINGS, SongSpec, StationStyle


def add_write_command(commands: argparse._SubParsersAction) -> None:
    """Register the `write` subcommand on the engine's CLI."""
    write = commands.add_parser(
        "write", help="write one song spec (title, tags, lyrics, bpm, key, length) and print it"
    )
    write.add_argument("--theme", default="", help="what the song is about (empty: auto mode)")
    write.add_argument("--genre", default="pop", help="the station's genre (default: pop)")
    write.add_argument("--mood", default="", help="the station's mood")
    write.add_argument("--language", default="en", help=f"lyrics language: {', '.join(LANGUAGES)} (default: en)")
    write.add_argument("--max-duration", type=int, default=60, help="the station's longest track in seconds")
    write.add_argument("--duration", type=int, help="ask for this length in seconds")
    write.add_argument("--rating", choices=RATINGS, help="lyrics rating (default: LYRICS_RATING, else clean)")
    write.add_argument("--seed", type=int, help="repeat a spec (default: random)")
    write.add_argument("--json", action="store_true", help="print the spec as JSON")
    write.set_defaults(handler=_write)


def _write(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        style = StationStyle(
            genre=args.genre,
            mood=args.mood,
            language=args.language,
            max_duration=args.max_duration,
            rating=args.rating or settings.lyrics_rating,
        )
    except ValidationError as exc:
        for error in exc.errors():
            print(f"--{error['loc'][0]}".replace("_", "-") + f": {error['msg']}", file=sys.stderr)
        return 2
    if args.seed is not None and not 0 <= args.seed < 2**63:
        print("--seed: must be from 0 to 2**63 - 1", file=sys.stderr)
        return 2
    from engine.gpu.tiers import detect_device, resolve
    from engine.songwriter.writer import Songwriter, SongwriterConfig  # loads llama.cpp: only here

    policy = resolve(settings, detect_device(settings, apply_cap=False))
    songwriter = Songwriter(SongwriterConfig.from_settings(settings, policy))
    result = songwriter.compose(args.theme, style, duration=args.duration, seed=args.seed)
    if result.theme_removed:
        print(
            f"The lyrics are rated {style.rating}: left out of the theme: {', '.join(result.theme_removed)}",
            file=sys.stderr,
        )
    if result.fallback_reason:
        print(f"Written by the template songwriter: {result.fallback_reason}", file=sys.stderr)
    print(result.spec.model_dump_json(indent=2) if args.json else format_spec(result.spec))
    return 0


def format_spec(spec: SongSpec) -> str:
    """A spec as a human reads it."""
    head = [
        f"Title:    {spec.title}",
        f"Caption:  {spec.caption}",
        f"Tempo:    {spec.bpm} bpm, {spec.key}, {spec.time_signature}",
        f"Length:   {spec.duration} s, language {spec.language}, seed {spec.seed}",
    ]
    return "\n".join([*head, "", spec.lyrics])
