"""`python train.py` without arguments: the interactive wizard (seeds/002).

Main menu: train, preprocess, estimate, manage presets, settings, quit; the
wizard stays open after each action. Training asks, in order: adapter (LoRA or
LoKR), mode (corrected or vanilla), model (checkpoint folder, then the variant,
picked by number or by part of its name), data and output folders, an optional
preset, basic or advanced settings, then shows a summary to confirm, and offers
to save the answers as a preset. After preprocessing it offers to go straight
on to training those tensors.

At any question: Enter keeps the default in brackets, `b` goes back to the
previous question, `?` explains the setting. Each answer is checked at once
with the same rules as the command line.

The wizard only gathers a `TrainConfig`; the work is done by the same library
functions the CLI and the bot call (`preprocess`, `train`, `estimate`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from training.config import ConfigError, TrainConfig, flag
from training.options import OPTION_BY_NAME, parse_value
from training.presets import delete_preset, list_presets, load_preset, save_preset

BACK = "b"
SETTINGS_FILE = "wizard_settings.json"


class WizardExit(Exception):
    """Input ended (stdin closed) while the wizard was asking."""


class _Back(Exception):
    pass


@dataclass
class Question:
    """One question about a `TrainConfig` field (or a wizard-only `key`)."""

    key: str
    prompt: str
    choices: tuple[str, ...] | None = None
    when: Callable[[dict[str, Any]], bool] = lambda answers: True
    optional: bool = False  # an empty answer means "none"
    help: str = ""


class Console:
    def __init__(self, stdin: TextIO, stdout: TextIO):
        self.stdin = stdin
        self.stdout = stdout

    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def read(self, prompt: str) -> str:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise WizardExit
        return line.strip()


def available_variants(folder: Path) -> list[str]:
    """Models in a checkpoints folder (`turbo`, `base`, ...); empty for a single
    diffusers pipeline folder or a folder without models."""
    from engine.checkpoint.find import DIT_PREFIX, variant_key

    if not folder.is_dir() or (folder / "model_index.json").is_file():
        return []
    names = {
        variant_key(p.name)
        for p in folder.iterdir()
        if p.is_dir() and (p.name.startswith(DIT_PREFIX) or (p / "model_index.json").is_file())
    }
    return sorted(names)


def pick(answer: str, choices: tuple[str, ...]) -> str | None:
    """A choice by number, by name, or by a part of the name that fits only one."""
    if answer.isdigit() and 1 <= int(answer) <= len(choices):
        return choices[int(answer) - 1]
    if answer in choices:
        return answer
    matches = [c for c in choices if answer.lower() in c.lower()]
    return matches[0] if len(matches) == 1 else None


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


class Wizard:
    def __init__(
        self,
        console: Console,
        *,
        presets_dir: Path | None = None,
    ):
        self.console = console
        self.presets_dir = presets_dir
        self.settings = self._load_settings()

    # --- persistent wizard settings ------------------------------------------
    def _settings_path(self) -> Path:
        from training.presets import user_presets_dir

        return (self.presets_dir or user_presets_dir()) / SETTINGS_FILE

    def _load_settings(self) -> dict[str, Any]:
        path = self._settings_path()
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            return {}

    def _save_settings(self) -> None:
        from training.storage import write_json

        write_json(self._settings_path(), self.settings)

    def _base_config(self) -> TrainConfig:
        config = TrainConfig(num_workers=0 if sys.platform == "win32" else 4)
        if self.settings.get("checkpoint_dir"):
            config = config.replace(checkpoint_dir=Path(self.settings["checkpoint_dir"]))
        if self.settings.get("model_variant"):
            config = config.replace(model_variant=self.settings["model_variant"])
        return config

    # --- asking ------------------------------------------------------------------
    def _ask_one(self, question: Question, answers: dict[str, Any], command: str) -> Any:
        option = OPTION_BY_NAME.get(question.key)
        default = answers.get(question.key)
        choices = question.choices
        if question.key == "model_variant":
            choices = tuple(available_variants(Path(answers["checkpoint_dir"]))) or None
        if choices:
            for index, choice in enumerate(choices, 1):
                self.console.say(f"    {index}) {choice}")
        while True:
            text = self.console.read(f"  {question.prompt} [{_shown(default)}]: ")
            if text == BACK:
                raise _Back
            if text == "?":
                self.console.say(f"    {question.help or (option.help if option else '')}")
                continue
            if not text:
                if default is not None or question.optional:
                    return default
                self.console.say("    An answer is needed here.")
                continue
            if question.optional and text == "-":
                return None
            if choices:
                chosen = pick(text, choices)
                if chosen is None:
                    self.console.say(f"    Choose a number from 1 to {len(choices)} or a name.")
                    continue
                text = chosen
            try:
                value = parse_value(option, text) if option else text
            except ValueError as exc:
                self.console.say(f"    {exc}: try again")
                continue
            problem = self._problem(question.key, value, answers, command)
            if problem:
                self.console.say(f"    {problem}")
                continue
            return value

    def _problem(self, key: str, value: Any, answers: dict[str, Any], command: str) -> str | None:
        if key not in OPTION_BY_NAME and key != "mode":
            return None
        values = {k: v for k, v in answers.items() if k in TrainConfig.__dataclass_fields__}
        config = TrainConfig(**{**values, key: value})
        check = "preprocess" if command == "preprocess" else config.mode
        mine = [e for e in config.errors(check) if e.startswith(flag(key) + " ")]
        return mine[0] if mine else None

    def ask(self, questions: list[Question], answers: dict[str, Any], command: str) -> bool:
        """Ask each applicable question; False when `b` went back past the first."""
        asked: list[int] = []
        index = 0
        while index < len(questions):
            question = questions[index]
            if not question.when(answers):
                index += 1
                continue
            try:
                answers[question.key] = self._ask_one(question, answers, command)
                if question.key == "preset" and answers["preset"]:
                    self._apply_preset(answers)
            except _Back:
                if not asked:
                    return False
                index = asked.pop()
                continue
            asked.append(index)
            index += 1
        return True

    def _apply_preset(self, answers: dict[str, Any]) -> None:
        try:
            values = load_preset(answers["preset"], self.presets_dir)
        except ConfigError as exc:
            self.console.say(f"    {exc}")
            answers["preset"] = None
            return
        answers.update(values)
        self.console.say(f"    Preset '{answers['preset']}' applied.")

    # --- flows ---------------------------------------------------------------------
    def train_questions(self) -> list[Question]:
        def lora(a):
            return a.get("adapter_type") == "lora"

        def lokr(a):
            return a.get("adapter_type") == "lokr"

        def advanced(a):
            return a.get("depth") == "advanced"

        def several_models(a):
            return bool(available_variants(Path(a["checkpoint_dir"])))

        presets = tuple(list_presets(self.presets_dir))
        return [
            Question("adapter_type", "Adapter", ("lora", "lokr"),
                     help="lora: stable (PEFT); lokr: Kronecker factors (LyCORIS), experimental"),
            Question("mode", "Training mode", ("fixed", "vanilla"),
                     help="fixed: corrected objective (recommended); vanilla: the original"),
            Question("checkpoint_dir", "Checkpoints folder"),
            Question("model_variant", "Model", when=several_models),
            Question("dataset_dir", "Preprocessed dataset folder"),
            Question("output_dir", "Output folder"),
            Question("preset", "Start from a preset (Enter: none)", presets, optional=True,
                     help="shipped presets are the VRAM profiles; see docs/training.md"),
            Question("depth", "Settings", ("basic", "advanced"),
                     help="basic: the few that matter, good defaults; advanced: everything"),
            Question("epochs", "Epochs"),
            Question("lr", "Learning rate"),
            Question("rank", "LoRA rank", when=lora),
            Question("alpha", "LoRA alpha", when=lora),
            Question("lokr_linear_dim", "LoKR linear dim", when=lokr),
            Question("lokr_linear_alpha", "LoKR alpha", when=lokr),
            Question("save_every", "Save a checkpoint every N epochs"),
            Question("dropout", "Adapter dropout", when=advanced),
            Question("attention_type", "Attention layers", ("both", "self", "cross"),
                     when=advanced),
            Question("target_modules", "Target modules", when=advanced),
            Question("bias", "Train biases", ("none", "all", "lora_only"),
                     when=lambda a: advanced(a) and lora(a)),
            Question("lokr_factor", "LoKR factor (-1: automatic)",
                     when=lambda a: advanced(a) and lokr(a)),
            Question("lokr_use_tucker", "LoKR Tucker decomposition?",
                     when=lambda a: advanced(a) and lokr(a)),
            Question("lokr_weight_decompose", "LoKR DoRA-style weight decomposition?",
                     when=lambda a: advanced(a) and lokr(a)),
            Question("optimizer_type", "Optimizer", ("adamw", "adamw8bit", "adafactor", "prodigy"),
                     when=advanced),
            Question("scheduler_type", "LR schedule",
                     ("cosine", "linear", "constant", "constant_with_warmup"), when=advanced),
            Question("warmup_steps", "Warmup steps", when=advanced),
            Question("batch_size", "Batch size", when=advanced),
            Question("gradient_accumulation", "Gradient accumulation", when=advanced),
            Question("max_grad_norm", "Gradient clipping norm", when=advanced),
            Question("weight_decay", "Weight decay", when=advanced),
            Question("cfg_ratio", "CFG dropout ratio",
                     when=lambda a: advanced(a) and a.get("mode") == "fixed"),
            Question("gradient_checkpointing", "Enable gradient checkpointing?", when=advanced),
            Question("offload_encoder", "Offload encoder/VAE to CPU?", when=advanced),
            Question("device", "Device", when=advanced),
            Question("precision", "Precision", ("auto", "bf16", "fp16", "fp32"), when=advanced),
            Question("seed", "Seed", when=advanced),
            Question("val_split", "Validation fraction", when=advanced),
            Question("sample_every_n_epochs", "Sample clips every N epochs (0: off)",
                     when=advanced),
            Question("num_workers", "Data loading workers", when=advanced),
        ]  # fmt: skip

    def _answers(self, config: TrainConfig, **extra: Any) -> dict[str, Any]:
        answers: dict[str, Any] = config.to_dict()
        for key, value in answers.items():
            option = OPTION_BY_NAME.get(key)
            if option is not None and option.kind == "path" and value is not None:
                answers[key] = Path(value)
        answers.update(depth="basic", preset=None, **extra)
        return answers

    def _config(self, answers: dict[str, Any]) -> TrainConfig:
        fields = TrainConfig.__dataclass_fields__
        return TrainConfig(**{k: v for k, v in answers.items() if k in fields})

    def train_flow(self, config: TrainConfig) -> None:
        from training.cli import summary

        answers = self._answers(config)
        if answers.get("output_dir") is None:
            answers["output_dir"] = Path("output") / "my_lora"
        questions = self.train_questions()
        while True:
            if not self.ask(questions, answers, answers.get("mode", "fixed")):
                return
            config = self._config(answers)
            try:
                config.check(config.mode)  # type: ignore[arg-type]
            except ConfigError as exc:
                for line in exc.lines:
                    self.console.say(f"  {line}")
                continue
            self.console.say("\n" + summary(config, config.mode))
            reply = self._confirm("Start training?")
            if reply == BACK:
                continue
            name = self.console.read("  Save these settings as a preset? (name, Enter: no) ")
            if name:
                try:
                    path = save_preset(name, config, self.presets_dir)
                    self.console.say(f"  Saved preset '{name}' ({path}).")
                except ConfigError as exc:
                    self.console.say(f"  {exc}")
            if reply == "y":
                from training.loop import train

                result = train(config)
                self.console.say(f"  Done: adapter in {result.adapter_dir}")
            return

    def _confirm(self, question: str) -> str:
        while True:
            text = self.console.read(f"  {question} [y/n/b] ").lower()
            if text in ("y", "yes", ""):
                return "y"
            if text in ("n", "no"):
                return "n"
            if text == BACK:
                return BACK
            self.console.say("    Answer y, n or b (back).")

    def preprocess_flow(self) -> None:
        config = self._base_config().replace(preprocess=True)
        answers = self._answers(config)
        questions = [
            Question("audio_dir", "Audio folder (wav, flac, mp3, ogg)"),
            Question("dataset_json", "Dataset JSON (Enter: none, captions from sidecars)",
                     optional=True),
            Question("tensor_output", "Write tensors to"),
            Question("max_duration", "Longest audio kept per track, seconds"),
            Question("checkpoint_dir", "Checkpoints folder"),
            Question("model_variant", "Model",
                     when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))),
        ]  # fmt: skip
        while True:
            if not self.ask(questions, answers, "preprocess"):
                return
            config = self._config(answers)
            reply = self._confirm(f"Preprocess into {config.tensor_output}?")
            if reply == BACK:
                continue
            if reply == "n":
                return
            break
        from training.preprocess import preprocess

        self.console.say(f"  {preprocess(config).summary()}")
        if self._confirm("Train on these tensors now?") == "y":
            self.train_flow(config.replace(preprocess=False, dataset_dir=config.tensor_output))

    def estimate_flow(self) -> None:
        answers = self._answers(self._base_config())
        questions = [
            Question("checkpoint_dir", "Checkpoints folder"),
            Question("model_variant", "Model",
                     when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))),
            Question("dataset_dir", "Preprocessed dataset folder"),
            Question("estimate_batches", "Batches to measure"),
            Question("top_k", "Modules to suggest"),
            Question("estimate_metric", "Metric", ("grad_norm", "fisher")),
        ]  # fmt: skip
        if not self.ask(questions, answers, "estimate"):
            return
        from training.estimate import estimate

        self.console.say(estimate(self._config(answers)).table())

    def presets_flow(self) -> None:
        while True:
            for name, description in list_presets(self.presets_dir).items():
                self.console.say(f"  {name:<14} {description}")
            text = self.console.read("  show NAME, delete NAME, or b (back): ")
            if text in (BACK, ""):
                return
            verb, _, name = text.partition(" ")
            try:
                if verb == "show":
                    self.console.say(json.dumps(load_preset(name, self.presets_dir), indent=2))
                elif verb == "delete":
                    delete_preset(name, self.presets_dir)
                    self.console.say(f"  Deleted '{name}'.")
                else:
                    self.console.say("  Type show NAME, delete NAME or b.")
            except ConfigError as exc:
                self.console.say(f"  {exc}")

    def settings_flow(self) -> None:
        answers = self._answers(self._base_config())
        questions = [
            Question("checkpoint_dir", "Default checkpoints folder"),
            Question("model_variant", "Default model",
                     when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))),
        ]  # fmt: skip
        if self.ask(questions, answers, "estimate"):
            self.settings = {
                "checkpoint_dir": str(answers["checkpoint_dir"]),
                "model_variant": answers["model_variant"],
            }
            self._save_settings()
            self.console.say("  Settings saved.")

    MENU = (
        ("1", "Train an adapter"),
        ("2", "Preprocess audio"),
        ("3", "Estimate module sensitivity"),
        ("4", "Manage presets"),
        ("5", "Settings"),
        ("q", "Quit"),
    )

    def run(self) -> int:
        self.console.say("ACE-Step 1.5 adapter trainer. At any question: b = back, ? = help.")
        flows = {
            "1": lambda: self.train_flow(self._base_config()),
            "2": self.preprocess_flow,
            "3": self.estimate_flow,
            "4": self.presets_flow,
            "5": self.settings_flow,
        }
        while True:
            self.console.say("")
            for key, label in self.MENU:
                self.console.say(f"  {key}) {label}")
            choice = self.console.read("Choose: ").lower()
            if choice in ("q", "quit"):
                return 0
            if choice not in flows:
                self.console.say("  Choose 1-5 or q.")
                continue
            try:
                flows[choice]()
            except ConfigError as exc:
                for line in exc.lines:
                    self.console.say(f"  error: {line}")


def run_wizard(
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    *,
    presets_dir: Path | None = None,
) -> int:
    console = Console(stdin or sys.stdin, stdout or sys.stdout)
    try:
        return Wizard(console, presets_dir=presets_dir).run()
    except WizardExit:
        console.say("\nNo more input: the wizard needs answers (or see 'train.py --help').")
        return 2
