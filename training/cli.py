"""`python train.py`: the trainer's command line (seeds/003's subcommands and flags).

    python train.py                                   # the wizard
    python train.py [--plain] [--yes] fixed ...       # corrected training
    python train.py [--plain] [--yes] vanilla ...     # original ACE-Step objective
    python train.py [--plain] estimate ...            # module sensitivity ranking

`fixed`/`vanilla` with `--preprocess` preprocess audio first; without
`--output-dir` they only preprocess. `--preset NAME` starts from a saved or
shipped preset, and `--resume-from CHECKPOINT` from the settings that
checkpoint was trained with (flags given on the command line still win).

Logging is set up first of all, before the wizard or any model library is
imported: warnings only on a terminal (the Rich bars stay whole), INFO lines
when piped or with `--plain`; each run's full log is in its `train.log`.
Everything that can stop a run (settings, device, dataset, checkpoint) is
checked before the summary is shown (training.preflight).

Exit status: 0 done (also after a requested stop), 1 a run-time problem (model,
dataset, audio), 2 invalid settings, 130 aborted with a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from training.config import ConfigError, TrainConfig
from training.messages import error_lines, summary, user_errors
from training.options import GROUPS, OPTIONS, Option, options_for

log = logging.getLogger(__name__)

COMMANDS = {
    "fixed": "Corrected training: logit-normal timesteps and 15% CFG dropout (recommended).",
    "vanilla": "The original ACE-Step objective: the turbo's 8 discrete timesteps, no CFG "
    "dropout (to reproduce old results).",
    "estimate": "Rank attention modules by gradient sensitivity to a dataset and write a --target-modules suggestion.",
}
EPILOG = "Every flag, the VRAM profiles and the workflow: docs/training.md."


def _add_option(group: argparse._ArgumentGroup, option: Option) -> None:
    shown = option.shown_default()
    text = f"{option.help} (default: {shown})"
    kwargs: dict = {"dest": option.name, "help": text.replace("%", "%%")}
    if option.kind == "flag":
        group.add_argument(*option.flags, action="store_true", default=option.default, **kwargs)
        return
    if option.kind == "switch":
        group.add_argument(*option.flags, action=argparse.BooleanOptionalAction, default=option.default, **kwargs)
        return
    types: dict[str, Callable] = {"int": int, "float": float, "path": Path, "list": str}
    kwargs["type"] = types.get(option.kind, str)
    kwargs["default"] = option.default
    if option.kind == "list":
        kwargs["nargs"] = "+"
    if option.choices:
        kwargs["choices"] = option.choices
        kwargs["metavar"] = "{" + ",".join(option.choices) + "}"
    group.add_argument(*option.flags, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="LoRA/LoKR fine-tuning of ACE-Step 1.5 for the radio. "
        "Run without arguments for the interactive wizard.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="Plain text output instead of Rich (also when stdout is piped) (default: False)",
    )
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="Skip the confirmation prompt and start at once (default: False)",
    )
    commands = parser.add_subparsers(dest="command", metavar="{fixed,vanilla,estimate}")
    for name, description in COMMANDS.items():
        sub = commands.add_parser(name, help=description.replace("%", "%%"), description=description, epilog=EPILOG)
        sub.add_argument(
            "--preset",
            help="Start from a named preset (shipped: comfortable, standard, tight, minimal; "
            "or one saved in the wizard); flags given here win (default: (none))",
        )
        chosen = options_for(name)
        for title in GROUPS:
            members = [option for option in chosen if option.group == title]
            if members:
                group = sub.add_argument_group(title)
                for option in members:
                    _add_option(group, option)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {o.name: getattr(args, o.name) for o in OPTIONS if hasattr(args, o.name)}
    mode = args.command if args.command in ("fixed", "vanilla") else "fixed"
    return TrainConfig(mode=mode, **values)


def parse(argv: list[str]) -> tuple[argparse.Namespace, TrainConfig]:
    """Parse `argv`. A `--preset`, then a `--resume-from` checkpoint's saved settings,
    supply defaults; flags given explicitly override both."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: fixed, vanilla or estimate (or no arguments: the wizard)")
    defaults: dict = {}
    if getattr(args, "preset", None):
        from training.presets import load_preset

        defaults.update(load_preset(args.preset))
    if getattr(args, "resume_from", None) is not None:
        from training.resume import saved_settings

        defaults.update(saved_settings(args.resume_from))
    if defaults:
        sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        known = {o.name for o in options_for(args.command)}
        sub.set_defaults(**{k: v for k, v in defaults.items() if k in known})
        args = parser.parse_args(argv)
    return args, config_from_args(args)


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [Y/n] ").strip().lower()
    except EOFError:
        print("\nNo answer (stdin closed): pass --yes to start without asking.", file=sys.stderr)
        return False
    return answer in ("", "y", "yes")


def run_command(args: argparse.Namespace, config: TrainConfig) -> int:
    from training.preflight import preflight

    command = args.command
    if command == "estimate":
        from training.estimate import estimate

        preflight(config, "estimate")
        result = estimate(config)
        print(result.table())
        print(f"Suggestion written to {result.suggestion_path}:\n  --target-modules {result.flag}")
        return 0
    only_preprocess = config.preprocess and config.output_dir is None
    preflight(config, "preprocess" if only_preprocess else command)  # type: ignore[arg-type]
    if only_preprocess:
        return _preprocess_only(config, args.plain)
    print(summary(config, command))
    if not args.yes and not confirm("Start training?"):
        print("Not started.")
        return 1
    from training.loop import train

    result = train(config, plain=args.plain)
    state = f"stopped ({result.reason})" if result.stopped else "finished"
    print(f"Training {state} at step {result.step}; adapter: {result.adapter_dir}")
    return 0


def _preprocess_only(config: TrainConfig, plain: bool) -> int:
    """Preprocessing without training; with `--progress-file`, its events end with
    `preprocessed` (encoded, unchanged, problems) or `error`."""
    from training.preprocess import preprocess
    from training.preprocess_progress import PreprocessProgress
    from training.progress import ProgressStream

    print(f"Preprocessing into {config.tensor_output}", flush=True)
    stream = ProgressStream(config.progress_file)
    report = PreprocessProgress(stream, plain=plain)
    try:
        result = preprocess(config, report=report)
        problems = [{"key": p.key, "reason": p.reason} for p in result.problems]
        stream.emit("preprocessed", encoded=len(result.encoded), unchanged=len(result.skipped), problems=problems)
    except BaseException as exc:
        stream.emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        report.close()
        stream.close()
    print(result.summary())
    return 0


def guarded(action: Callable[[], int]) -> int:
    """Run `action`, turning the errors a user can fix into a message and a status."""
    try:
        return action()
    except ConfigError as exc:
        for line in error_lines(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2
    except user_errors() as exc:
        log.debug("stopped by an error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Aborted.", file=sys.stderr)
        return 130


def run_config(config: TrainConfig) -> int:
    """Train from a ready config without asking (the bot's child process). A run
    that cannot start is also an `error` event in its progress stream: the bot
    watches that file (the folder is the bot's, made before the child started)."""
    from training.preflight import preflight
    from training.progress import ProgressStream

    args = argparse.Namespace(command=config.mode, yes=True, plain=True)
    command = "preprocess" if config.preprocess and config.output_dir is None else config.mode

    def action() -> int:
        try:
            preflight(config, command)  # type: ignore[arg-type]
        except BaseException as exc:
            stream = ProgressStream(config.progress_path)
            stream.emit("error", message=f"{type(exc).__name__}: {exc}")
            stream.close()
            raise
        return run_command(args, config)

    return guarded(action)


def main(argv: list[str] | None = None) -> int:
    from engine.logs import setup_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    interactive = sys.stdout.isatty() and "--plain" not in argv
    setup_logging("WARNING" if interactive or not argv else "INFO")
    if not argv:
        from training.wizard import run_wizard

        return guarded(run_wizard)
    try:
        args, config = parse(argv)
    except ConfigError as exc:  # a preset or checkpoint that cannot be read
        for line in error_lines(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2
    return guarded(lambda: run_command(args, config))
