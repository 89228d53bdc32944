"""`python train.py` without arguments: the interactive wizard (seeds/002).

Main menu: train, preprocess, estimate, manage presets, settings, quit; the
wizard stays open after each action, and after any error: it says what went
wrong (a missing manifest, a model it cannot load, a run that failed) and
keeps the answers, so choosing the action again starts from them. Training
asks, in order: adapter (LoRA or LoKR), mode (corrected or vanilla), model
(checkpoint folder, then the variant, picked by number or by part of its
name), data and output folders, an optional preset, basic or advanced
settings; then the settings, device and dataset are checked
(training.preflight) before a summary to confirm, and it offers to save the
answers as a preset. After preprocessing (with its progress shown as it
goes) it offers to go straight on to training those tensors.

How questions are asked and answers checked: training.wizard_ask. The wizard
only gathers a `TrainConfig`; the work is done by the same library functions
the CLI and the bot call (`preprocess`, `train`, `estimate`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from training.config import ConfigError, TrainConfig
from training.messages import error_lines, summary, user_errors
from training.options import OPTION_BY_NAME
from training.presets import delete_preset, list_presets, load_preset, save_preset
from training.wizard_ask import (
    BACK,
    Asker,
    Console,
    Question,
    WizardExit,
    available_variants,
)
from training.wizard_questions import train_questions

log = logging.getLogger(__name__)

SETTINGS_FILE = "wizard_settings.json"


class Wizard(Asker):
    def __init__(self, console: Console, *, presets_dir: Path | None = None):
        super().__init__(console, presets_dir)
        self.settings = self._load_settings()
        #: The answers of each flow, kept across errors and returns to the menu.
        self.kept: dict[str, dict[str, Any]] = {}

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

    # --- flows ---------------------------------------------------------------------
    def _answers(self, config: TrainConfig, **extra: Any) -> dict[str, Any]:
        answers: dict[str, Any] = config.to_dict()
        for key, value in answers.items():
            option = OPTION_BY_NAME.get(key)
            if option is not None and option.kind == "path" and value is not None:
                answers[key] = Path(value)
        answers.update(depth="basic", preset=None, **extra)
        return answers

    def _kept(self, flow: str, config: TrainConfig | None = None) -> dict[str, Any]:
        """The answers of `flow` as left last time, or fresh ones from `config` (or the
        wizard's defaults); kept for the next time whatever happens."""
        if config is not None or flow not in self.kept:
            self.kept[flow] = self._answers(config or self._base_config())
        return self.kept[flow]

    def _config(self, answers: dict[str, Any]) -> TrainConfig:
        fields = TrainConfig.__dataclass_fields__
        return TrainConfig(**{k: v for k, v in answers.items() if k in fields})

    def _ready(self, config: TrainConfig, command: str) -> bool:
        """Settings, device and dataset checked before the summary; problems said."""
        from training.preflight import preflight
        from training.storage import DatasetFormatError

        try:
            preflight(config, command)  # type: ignore[arg-type]
        except (ConfigError, DatasetFormatError) as exc:
            for line in error_lines(exc):
                self.console.say(f"  {line}")
            return False
        return True

    def train_flow(self, config: TrainConfig | None = None) -> None:

        answers = self._kept("train", config)
        if answers.get("output_dir") is None:
            answers["output_dir"] = Path("output") / "my_lora"
        questions = train_questions(tuple(list_presets(self.presets_dir)))
        while True:
            if not self.ask(questions, answers, answers.get("mode", "fixed")):
                return
            config = self._config(answers)
            if not self._ready(config, config.mode):
                continue
            self.console.say("\n" + summary(config, config.mode))
            reply = self.confirm("Start training?")
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

    def preprocess_flow(self) -> None:
        answers = self._kept("preprocess")
        answers["preprocess"] = True
        questions = [
            Question("audio_dir", "Audio folder (wav, flac, mp3, ogg)"),
            Question("dataset_json", "Dataset JSON (Enter: none, captions from sidecars)", optional=True),
            Question("tensor_output", "Write tensors to"),
            Question("max_duration", "Longest audio kept per track, seconds"),
            Question("checkpoint_dir", "Checkpoints folder"),
            Question("model_variant", "Model", when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))),
        ]
        while True:
            if not self.ask(questions, answers, "preprocess"):
                return
            config = self._config(answers)
            if not self._ready(config, "preprocess"):
                continue
            reply = self.confirm(f"Preprocess into {config.tensor_output}?")
            if reply == BACK:
                continue
            if reply == "n":
                return
            break
        from training.preprocess import preprocess
        from training.preprocess_progress import PreprocessProgress

        report = PreprocessProgress(out=self.console.stdout)
        try:
            result = preprocess(config, report=report)
        finally:
            report.close()
        self.console.say(f"  {result.summary()}")
        if self.confirm("Train on these tensors now?") == "y":
            self.train_flow(config.replace(preprocess=False, dataset_dir=config.tensor_output))

    def estimate_flow(self) -> None:
        answers = self._kept("estimate")
        questions = [
            Question("checkpoint_dir", "Checkpoints folder"),
            Question("model_variant", "Model", when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))),
            Question("dataset_dir", "Preprocessed dataset folder"),
            Question("estimate_batches", "Batches to measure"),
            Question("top_k", "Modules to suggest"),
            Question("estimate_metric", "Metric", ("grad_norm", "fisher")),
        ]
        while True:
            if not self.ask(questions, answers, "estimate"):
                return
            config = self._config(answers)
            if self._ready(config, "estimate"):
                break
        from training.estimate import estimate

        self.console.say(estimate(config).table())

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
            Question(
                "model_variant", "Default model", when=lambda a: bool(available_variants(Path(a["checkpoint_dir"])))
            ),
        ]
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
            "1": self.train_flow,
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
            self._guarded(flows[choice])

    def _guarded(self, flow: Callable[[], None]) -> None:
        """Run a flow; whatever goes wrong, say it and come back to the menu."""

        try:
            flow()
            return
        except WizardExit:
            raise
        except KeyboardInterrupt:
            self.console.say("\n  Aborted (Ctrl-C).")
        except (ConfigError, *user_errors()) as exc:
            log.debug("the wizard's action failed", exc_info=True)
            for line in error_lines(exc):
                self.console.say(f"  error: {line}")
        except Exception as exc:  # anything else: said, and the traceback is in the log
            log.exception("the wizard's action failed")
            self.console.say(f"  error: {type(exc).__name__}: {exc}")
        self.console.say("  Your answers are kept: choose the action again to retry or change them")


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
