"""The wizard's way of asking: questions, answers checked at once, going back.

At any question: Enter keeps the default in brackets, `b` goes back to the
previous question, `?` explains the setting, `-` clears an optional answer.
Each answer is checked with the same rules as the command line; a dataset
folder must also be a preprocessed dataset (a `manifest.json` with tracks),
so an audio folder is refused at the question, not after the model loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from training.config import ConfigError, TrainConfig, flag
from training.options import OPTION_BY_NAME, parse_value
from training.presets import load_preset

BACK = "b"
#: Commands whose dataset folder must already hold preprocessed tracks.
NEEDS_TENSORS = ("fixed", "vanilla", "estimate")


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


def shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def dataset_problem(folder: Path) -> str | None:
    """Why `folder` is not a preprocessed dataset to train on, or None."""
    from training.preflight import require_dataset
    from training.storage import DatasetFormatError

    try:
        require_dataset(folder)
    except DatasetFormatError as exc:
        return f"{flag('dataset_dir')}: {exc}"
    return None


class Asker:
    """Asks questions on a `Console` and fills an answers dict."""

    def __init__(self, console: Console, presets_dir: Path | None = None):
        self.console = console
        self.presets_dir = presets_dir

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
            text = self.console.read(f"  {question.prompt} [{shown(default)}]: ")
            if text == BACK:
                raise _Back
            if text == "?":
                self.console.say(f"    {question.help or (option.help if option else '')}")
                continue
            if not text:
                if default is None and not question.optional:
                    self.console.say("    An answer is needed here.")
                    continue
                value = default
            elif question.optional and text == "-":
                return None
            else:
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
            problem = value is not None and self._problem(question.key, value, answers, command)
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
        if mine:
            return mine[0]
        if key == "dataset_dir" and command in NEEDS_TENSORS:
            return dataset_problem(Path(value))
        return None

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
                before = answers.get(question.key)
                answers[question.key] = self._ask_one(question, answers, command)
                # A preset kept with Enter is not applied again over the answers kept.
                if question.key == "preset" and answers["preset"] not in (None, before):
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

    def confirm(self, question: str) -> str:
        """'y', 'n' or BACK."""
        while True:
            text = self.console.read(f"  {question} [y/n/b] ").lower()
            if text in ("y", "yes", ""):
                return "y"
            if text in ("n", "no"):
                return "n"
            if text == BACK:
                return BACK
            self.console.say("    Answer y, n or b (back).")
