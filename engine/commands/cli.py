"""`python -m engine ...`: the engine's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.checkpoint.download import VARIANT_REPOS, DownloadError, download_acestep, download_gguf
from engine.commands.doctor import add_doctor_command
from engine.commands.generate import add_generate_command
from engine.commands.tiers import add_tiers_command
from engine.commands.write import add_write_command
from engine.gpu.tiers import DeviceError, detect_device, resolve
from engine.logs import setup_logging
from engine.settings import SettingsError, load_settings
from engine.songwriter.models import recommend


def _download(args: argparse.Namespace) -> int:
    """ACE-Step 1.5, then the songwriter model recommended for this GPU (or --gguf).
    Each failure is said plainly; the other download still runs."""
    settings = load_settings()
    policy = resolve(settings, detect_device(settings, apply_cap=False))
    failed = False
    try:
        path = download_acestep(settings.checkpoint_dir, args.variant)
        print(f"ACE-Step 1.5 ({args.variant}) is in {path}")
    except DownloadError as exc:
        print(exc, file=sys.stderr)
        failed = True
    recommended, why = recommend(policy)
    wanted = args.gguf or (recommended.download_spec if recommended else None)
    if wanted is None:
        print(f"Songwriter: the bundled model is used ({why}); nothing to download.")
        return int(failed)
    try:
        path = download_gguf(wanted, settings.models_dir)
        print(f"Songwriter model is in {path}" + ("" if args.gguf else f" ({why})"))
    except DownloadError as exc:
        print(f"{exc} Until then the bundled songwriter model is used.", file=sys.stderr)
        failed = True
    return int(failed)


def _tiny_checkpoint(args: argparse.Namespace) -> int:
    from engine.checkpoint.tiny import NOTICE, write_tiny_checkpoint

    try:
        path = write_tiny_checkpoint(args.dir, layout=args.layout, variant=args.variant)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"Tiny ACE-Step 1.5 ({args.variant}, {args.layout} layout) written to {path}")
    print(NOTICE)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from engine.checkpoint.convert import convert_original
    from engine.checkpoint.find import CheckpointError, inspect_checkpoint

    try:
        info = inspect_checkpoint(args.src, args.variant)
        if info.layout == "diffusers":
            print(f"{info.path} is already in the diffusers layout", file=sys.stderr)
            return 1
        convert_original(info.path, info.name, args.dst)
    except CheckpointError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{info.describe()} converted to the diffusers layout in {args.dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_tiers_command(commands)

    download = commands.add_parser(
        "download",
        help="download ACE-Step 1.5 and the songwriter model recommended for this GPU",
    )
    download.add_argument("--variant", choices=sorted(VARIANT_REPOS), default="turbo")
    download.add_argument(
        "--gguf",
        metavar="OWNER/REPO/FILE.gguf",
        help="fetch this songwriter GGUF instead of the recommended one",
    )
    download.set_defaults(handler=_download)

    tiny = commands.add_parser(
        "tiny-checkpoint",
        help="write a tiny random-weight model (noise, not music) to try every command",
    )
    tiny.add_argument("dir", type=Path, help="an empty or new folder")
    tiny.add_argument("--layout", choices=["diffusers", "original"], default="diffusers")
    tiny.add_argument("--variant", choices=["turbo", "base", "sft"], default="turbo")
    tiny.set_defaults(handler=_tiny_checkpoint)

    convert = commands.add_parser("convert", help="convert an original ACE-Step 1.5 checkpoints/ folder to diffusers")
    convert.add_argument("src", type=Path, help="the original checkpoints/ folder")
    convert.add_argument("dst", type=Path, help="a new folder for the diffusers pipeline")
    convert.add_argument("--variant", help="turbo (default), base, sft, xl-turbo, ...")
    convert.set_defaults(handler=_convert)

    add_write_command(commands)
    add_generate_command(commands)
    add_doctor_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, settings.secrets, settings.log_file)
        return args.handler(args)
    except (SettingsError, DeviceError) as exc:
        print(exc, file=sys.stderr)
        return 2
