"""`python train.py`: the trainer's command line (seeds/003's subcommands and flags).

    python train.py                                   # the wizard
    python train.py [--plain] [--yes] fixed ...       # corrected training
    python train.py [--plain] [--yes] vanilla ...     # original ACE-Step objective
    python train.py [--plain] estimate ...            # module sensitivity ranking

`fixed`/`vanilla` with `--preprocess` preprocess audio first; without
`--output-dir` they only preprocess. `--preset NAME` starts from a saved or
shipped preset (flags given on the command line still win).

Exit status: 0 done (also after a requested stop), 1 a run-time problem (model,
dataset, audio), 2 invalid settings, 130 aborted with a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from training.config import ConfigError, TrainConfig, TrainingError
from training.options import GROUPS, OPTIONS, Option, options_for

log = logging.getLogger(__name__)

COMMANDS = {
    "fixed": "Corrected training: logit-normal timesteps and 15% CFG dropout (recommended).",
    "vanilla": "The original ACE-Step objective: the turbo's 8 discrete timesteps, no CFG "
    "dropout (to reproduce old results).",
    "estimate": "Rank attention modules by gradient sensitivity to a dataset and write a "
    "--target-modules suggestion.",
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
        group.add_argument(
            *option.flags, action=argparse.BooleanOptionalAction, default=option.default, **kwargs
        )
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
        sub = commands.add_parser(
            name, help=description.replace("%", "%%"), description=description, epilog=EPILOG
        )
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
    """Parse `argv`; a `--preset` supplies defaults that explicit flags override."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: fixed, vanilla or estimate (or no arguments: the wizard)")
    if getattr(args, "preset", None):
        from training.presets import load_preset

        preset = load_preset(args.preset)
        sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
        known = {o.name for o in options_for(args.command)}
        sub.set_defaults(**{k: v for k, v in preset.items() if k in known})
        args = parser.parse_args(argv)
    return args, config_from_args(args)


def summary(config: TrainConfig, command: str) -> str:
    """The settings that matter most, for the confirmation prompt."""
    adapter = (
        f"LoRA rank {config.rank} alpha {config.alpha:g}"
        if config.adapter_type == "lora"
        else f"LoKR dim {config.lokr_linear_dim} alpha {config.lokr_linear_alpha:g} "
        f"factor {config.lokr_factor}"
    )
    lines = [
        f"mode            {command}",
        f"model           {config.checkpoint_dir} ({config.model_variant})",
        f"data            {config.tensor_output if config.preprocess else config.dataset_dir}",
        f"output          {config.output_dir}",
        f"adapter         {adapter}, {config.attention_type} attention, "
        f"{' '.join(config.target_modules)}",
        f"optimizer       {config.optimizer_type}, lr {config.lr:g}, "
        f"{config.effective_scheduler} schedule, warmup {config.warmup_steps}",
        f"batches         {config.batch_size} x {config.gradient_accumulation} accumulation, "
        f"{config.epochs} epochs"
        + (f", at most {config.max_steps} steps" if config.max_steps else ""),
        f"memory          gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}"
        f", encoder offload {'on' if config.offload_encoder else 'off'}, "
        f"device {config.device}, precision {config.precision}",
    ]
    if config.preprocess:
        lines.insert(2, f"preprocess      {config.audio_dir or config.dataset_json} -> "
                        f"{config.tensor_output} (max {config.max_duration:g} s)")  # fmt: skip
    return "\n".join(lines)


def confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [Y/n] ").strip().lower()
    except EOFError:
        print("\nNo answer (stdin closed): pass --yes to start without asking.", file=sys.stderr)
        return False
    return answer in ("", "y", "yes")


def _print_preprocess(key: str, what: str) -> None:
    print(f"  {key}: {what}", flush=True)


def run_command(args: argparse.Namespace, config: TrainConfig) -> int:
    command = args.command
    if command == "estimate":
        from training.estimate import estimate

        config.check("estimate")
        result = estimate(config)
        print(result.table())
        print(f"Suggestion written to {result.suggestion_path}:\n  --target-modules {result.flag}")
        return 0
    only_preprocess = config.preprocess and config.output_dir is None
    config.check("preprocess" if only_preprocess else command)  # type: ignore[arg-type]
    if only_preprocess:
        from training.preprocess import preprocess

        print(f"Preprocessing into {config.tensor_output}", flush=True)
        print(preprocess(config, report=_print_preprocess).summary())
        return 0
    print(summary(config, command))
    if not args.yes and not confirm("Start training?"):
        print("Not started.")
        return 1
    from training.loop import train

    result = train(config, plain=args.plain)
    state = f"stopped ({result.reason})" if result.stopped else "finished"
    print(f"Training {state} at step {result.step}; adapter: {result.adapter_dir}")
    return 0


def guarded(action: Callable[[], int]) -> int:
    """Run `action`, turning the errors a user can fix into a message and a status."""
    from engine.checkpoint.find import CheckpointError
    from training.storage import DatasetFormatError
    from training.tracks import DatasetError

    try:
        return action()
    except ConfigError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (CheckpointError, DatasetFormatError, DatasetError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Aborted.", file=sys.stderr)
        return 130


def run_config(config: TrainConfig) -> int:
    """Train from a ready config without asking (the bot's child process)."""
    args = argparse.Namespace(command=config.mode, yes=True, plain=True)
    return guarded(lambda: run_command(args, config))


def main(argv: list[str] | None = None) -> int:
    from engine.logs import setup_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        from training.wizard import run_wizard

        return guarded(run_wizard)
    args, config = parse(argv)
    setup_logging("INFO" if args.plain or not sys.stdout.isatty() else "WARNING")
    return guarded(lambda: run_command(args, config))
