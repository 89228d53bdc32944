"""The project as a newcomer meets it: documented keys, entry points, README commands."""

from __future__ import annotations

import re
import subprocess
import sys

from bot.settings import BotSettings, load_bot_settings
from engine.settings import PROJECT_ROOT, Settings

#: The engine's keys and the bot's: one `.env`, one page of docs.
KEYS = sorted({name.upper() for name in Settings.model_fields} | {name.upper() for name in BotSettings.model_fields})


def test_every_settings_key_is_in_env_example_with_an_explanation() -> None:
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    for key in KEYS:
        matches = [i for i, line in enumerate(lines) if line.startswith(f"{key}=")]
        assert len(matches) == 1, f"{key} missing or repeated in .env.example"
        assert lines[matches[0] - 1].startswith("# "), f"{key} has no explanation line"


def test_env_example_holds_only_real_keys_and_loads_cleanly(env_file) -> None:
    text = (PROJECT_ROOT / ".env.example").read_text()
    listed = re.findall(r"^([A-Z_]+)=", text, flags=re.M)
    assert sorted(listed) == sorted(KEYS)
    env_file.write_text(text)
    load_bot_settings()


def test_every_settings_key_is_documented() -> None:
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    for key in KEYS:
        assert f"| `{key}` |" in doc, f"{key} is not in docs/configuration.md"


def test_seed_keys_keep_their_names() -> None:
    for key in [
        "DISCORD_TOKEN",
        "CPU_OFFLOAD",
        "TORCH_COMPILE",
        "OVERLAPPED_DECODE",
        "LLM_MODEL_NAME",
        "LLM_GPU_LAYERS",
        "LLM_CONTEXT_SIZE",
        "DEFAULT_DURATION",
        "MAX_LENGTH_MAX",
        "BATCH_SIZE",
        "BUFFER_SIZE",
        "MAX_CUDA_VRAM",
    ]:
        assert key in KEYS


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 2
    test_command = blocks[1].strip()
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()


def test_train_help_lists_the_seed_commands_and_flags() -> None:
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for command in ("fixed", "vanilla", "estimate", "--plain", "--yes"):
        assert command in out.stdout
    fixed = subprocess.run(
        [sys.executable, "train.py", "fixed", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert fixed.returncode == 0, fixed.stderr
    for flag in ("--checkpoint-dir", "--rank", "--cfg-ratio", "--preprocess", "--resume-from"):
        assert flag in fixed.stdout


def test_setup_script_is_valid_bash_and_rejects_unknown_options() -> None:
    assert subprocess.run(["bash", "-n", "setup.sh"], cwd=PROJECT_ROOT).returncode == 0
    out = subprocess.run(["bash", "setup.sh", "--bogus"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "allowed: --models" in out.stderr
