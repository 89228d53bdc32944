"""`python -m engine generate`: sing one song from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from engine.spec import KEYS, LANGUAGES, TIME_SIGNATURES, SongSpec


def add_generate_command(commands: argparse._SubParsersAction) -> None:
    generate = commands.add_parser(
        "generate",
        help="make one song from a caption and lyrics",
        description="Make one song with ACE-Step 1.5 and write it to a file "
        "(ogg, flac, mp3 or wav, from --out's suffix).",
    )
    generate.add_argument("--caption", required=True, help="style tags, e.g. 'lo-fi, piano, rain'")
    generate.add_argument(
        "--lyrics",
        default="",
        help="lyrics with [Verse 1]/[Chorus] tags; empty or [Instrumental]: an instrumental",
    )
    generate.add_argument("--lyrics-file", type=Path, help="read the lyrics from this file instead")
    generate.add_argument("--title", default="Untitled", help="title tag of the file")
    generate.add_argument("--duration", type=int, default=None, help="seconds (default: DEFAULT_DURATION)")
    generate.add_argument("--bpm", type=int, default=100, help="tempo, 40-220")
    generate.add_argument("--key", default="C major", metavar="KEY", help="e.g. 'C major', 'F# minor'")
    generate.add_argument("--time-signature", default="4/4", choices=sorted(TIME_SIGNATURES))
    generate.add_argument("--language", default="en", choices=LANGUAGES, metavar="LANG")
    generate.add_argument("--seed", type=int, default=None, help="same seed, same song (default: random)")
    generate.add_argument("--out", type=Path, required=True, help="output file: .ogg, .flac, .mp3 or .wav")
    generate.add_argument("--checkpoint", type=Path, help="checkpoint folder (default: CHECKPOINT_DIR)")
    generate.add_argument("--variant", help="turbo, base, sft, ... when the folder holds several")
    generate.add_argument("--adapter", type=Path, help="a LoRA/LoKR adapter file or folder")
    generate.add_argument("--adapter-scale", type=float, default=1.0, help="adapter strength, 0-4")
    generate.add_argument("--steps", type=int, help="diffusion steps (default: 8 turbo, 32 base)")
    generate.add_argument("--batch", type=int, default=1, help="songs from consecutive seeds")
    generate.set_defaults(handler=run_generate)


def _spec(args: argparse.Namespace, default_duration: int) -> SongSpec:
    lyrics = args.lyrics_file.read_text() if args.lyrics_file else args.lyrics
    if args.key not in KEYS:
        raise ValueError(f"--key '{args.key}' is not a key: use e.g. 'C major' or 'F# minor'")
    return SongSpec(
        title=args.title,
        caption=args.caption,
        lyrics=lyrics,
        bpm=args.bpm,
        key=args.key,
        time_signature=args.time_signature,
        duration=args.duration or default_duration,
        language=args.language,
        seed=args.seed,
    )


def run_generate(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.adapters.manager import AdapterError
    from engine.audio import SUFFIXES, AudioError
    from engine.checkpoint.find import CheckpointError
    from engine.errors import GenerationError
    from engine.gpu.vram import VramError
    from engine.music_engine import MusicEngine
    from engine.settings import load_settings

    settings = load_settings()
    fmt = SUFFIXES.get(args.out.suffix.lower())
    if fmt is None:
        print(
            f"--out '{args.out}': allowed suffixes are {', '.join(sorted(SUFFIXES))}",
            file=sys.stderr,
        )
        return 2
    try:
        spec = _spec(args, settings.default_duration)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"invalid song: {exc}", file=sys.stderr)
        return 2
    try:
        engine = MusicEngine(settings, checkpoint=args.checkpoint, variant=args.variant)
        if args.adapter:
            engine.load_adapter(args.adapter, scale=args.adapter_scale)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task(f"Singing '{spec.title}'", total=None)
            tracks = engine.generate(
                spec,
                out_path=args.out,
                fmt=fmt,
                batch=args.batch,
                steps=args.steps,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (CheckpointError, AdapterError, GenerationError, VramError, AudioError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for track in tracks:
        t, used = track.timings, track.settings
        print(f"Wrote {track.path} ({track.duration:.1f} s, seed {track.seed})")
        print(
            f"  text {t['text']:.2f} s, DiT {t['dit']:.2f} s, VAE {t['vae']:.2f} s, "
            f"encode {t['encode']:.2f} s; {used['placement']} on {used['device']}"
        )
        for warning in track.warnings:
            print(f"  warning: {warning}")
    return 0
