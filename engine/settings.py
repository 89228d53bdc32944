"""One typed settings object, read from `.env` and the environment.

Every key keeps the name a user of the 8 GB guide expects (`CPU_OFFLOAD`,
`BUFFER_SIZE`, ...). A wrong value stops start-up with one line per key that
names the key, the value and what is allowed (`SettingsError`), and the
Discord token is a `SecretStr` so it never shows in `repr`, logs or errors.

Keys whose default depends on the GPU (`CPU_OFFLOAD`, `DIT_OFFLOAD`,
`QUANTIZATION`, `TORCH_COMPILE`, `LLM_GPU_LAYERS`) accept `auto`, which
`engine.gpu.tiers.resolve` turns into the tier's policy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE_VARIABLE = "RADIO_ENV_FILE"
#: Settings that are secrets: no child process (worker, trainer, ffmpeg) gets them.
SECRET_KEYS = ("DISCORD_TOKEN",)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_AUTO = {"", "auto"}


def _strict_bool(value: Any) -> Any:
    """true/false words (yes/no, on/off, 1/0) -> bool; anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError("not a switch")


def _tri_state(value: Any) -> Any:
    """`auto`/empty -> None (the tier decides); otherwise as `_strict_bool`."""
    if value is None or str(value).strip().lower() in _AUTO:
        return None
    return _strict_bool(value)


def _auto_or_int(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in _AUTO):
        return None
    return value


def _id_list(value: Any) -> Any:
    """`123, 456` (commas or spaces) -> a tuple of ids; empty -> none."""
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[,\s]+", value.strip()) if part)
    return value


def _empty_is_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


AutoSwitch = Annotated[bool | None, BeforeValidator(_tri_state)]
IdList = Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode, BeforeValidator(_id_list)]
Switch = Annotated[bool, BeforeValidator(_strict_bool)]

_SWITCH = "true or false (also yes/no, on/off, 1/0)"
_AUTO_SWITCH = "auto, true or false (also yes/no, on/off, 1/0)"


def _field(default: Any, allowed: str, **constraints: Any) -> Any:
    """A settings field that carries the human description of its allowed values."""
    return Field(default, json_schema_extra={"allowed": allowed}, **constraints)


class Settings(BaseSettings):
    """Everything tunable from `.env`. See docs/configuration.md for each key."""

    model_config = SettingsConfigDict(
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # Discord
    discord_token: Annotated[SecretStr | None, BeforeValidator(_empty_is_none)] = _field(
        None, "the bot token from the Discord developer portal"
    )
    dev_guild_id: Annotated[int | None, BeforeValidator(_empty_is_none)] = _field(
        None, "empty, or the id of one server (a positive integer)", ge=1
    )
    dj_role: str = _field("DJ", "a role name or role id; empty: Manage Server only", max_length=100)
    owner_ids: IdList = _field((), "empty, or Discord user ids separated by commas (besides the application's owner)")
    training_guilds: IdList = _field((), "empty, or server ids separated by commas whose admins may train adapters")
    vote_skip_ratio: float = _field(0.5, "a share of listeners above 0, up to 1", gt=0, le=1)
    idle_disconnect_seconds: int = _field(120, "an integer number of seconds from 0 (stay) to 86400", ge=0, le=86400)
    upload_max_mb: int = _field(8, "an integer number of MB from 1 to 100", ge=1, le=100)
    dataset_max_tracks: int = _field(50, "an integer from 1 to 1000", ge=1, le=1000)
    dataset_max_seconds: int = _field(300, "an integer number of seconds from 1 to 1800", ge=1, le=1800)

    # Device and memory policy (engine/gpu/tiers.py)
    device: str = _field("auto", "auto, cpu, cuda or cuda:N")
    max_cuda_vram: Annotated[float | None, BeforeValidator(_empty_is_none)] = _field(
        None, "empty, or a number of GB from 1 to 1024", ge=1, le=1024
    )
    cpu_offload: AutoSwitch = _field(None, _AUTO_SWITCH)
    dit_offload: AutoSwitch = _field(None, _AUTO_SWITCH)
    quantization: Literal["auto", "none", "int8"] = _field("auto", "auto, none or int8")
    torch_compile: AutoSwitch = _field(None, _AUTO_SWITCH)
    overlapped_decode: Switch = _field(True, _SWITCH)
    attention_backend: Literal["auto", "sdpa", "flash_attention_2"] = _field("auto", "auto, sdpa or flash_attention_2")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _field("auto", "auto, bf16, fp16 or fp32")

    # Songwriter LLM
    llm_model_name: str = _field(
        "auto",
        "auto (the GPU tier's recommended model once downloaded, else the bundled one), "
        "a GGUF file name in MODELS_DIR, or a path to a .gguf file",
        min_length=1,
    )
    llm_gpu_layers: Annotated[int | None, BeforeValidator(_auto_or_int)] = _field(
        None, "auto, -1 (all layers on the GPU), 0 (CPU only) or a number of layers", ge=-1
    )
    llm_context_size: int = _field(2048, "an integer from 512 to 131072", ge=512, le=131072)
    llm_threads: Annotated[int | None, BeforeValidator(_auto_or_int)] = _field(
        None, "auto or a number of CPU threads from 1 to 256", ge=1, le=256
    )
    llm_timeout: float = _field(60.0, "a number of seconds from 5 to 600", ge=5, le=600)

    # Songs
    lyrics_rating: Literal["clean", "explicit"] = _field(
        "clean", "clean (no swearing, sex, drugs, slurs or self-harm) or explicit"
    )
    default_duration: int = _field(
        60, "an integer number of seconds from 10 to 600, not above MAX_LENGTH_MAX", ge=10, le=600
    )
    max_length_max: int = _field(300, "an integer number of seconds from 30 to 600", ge=30, le=600)
    batch_size: int = _field(1, "an integer from 1 to 8", ge=1, le=8)
    buffer_size: int = _field(2, "an integer from 1 to 20", ge=1, le=20)
    loudness_target: float = _field(-14.0, "a loudness in LUFS from -40 to -5 (EBU R128)", ge=-40, le=-5)

    # Station (bot/store/)
    tracks_disk_budget_mb: int = _field(2048, "an integer number of MB from 100 to 1048576", ge=100, le=1_048_576)
    max_queue_per_user: int = _field(3, "an integer from 1 to 50", ge=1, le=50)
    max_queue_per_guild: int = _field(20, "an integer from 1 to 500", ge=1, le=500)

    # GPU worker process (engine/worker/process.py) and the local listener (bot/local.py)
    worker_max_in_flight: int = _field(2, "an integer from 1 to 4", ge=1, le=4)
    worker_max_adapters: int = _field(4, "an integer from 1 to 64: adapters the worker keeps loaded", ge=1, le=64)
    worker_stall_timeout: float = _field(600.0, "a number of seconds from 30 to 3600", ge=30, le=3600)
    local_output_dir: Path = _field(Path("data/local-radio"), "a folder for what `python -m bot.local` plays")

    # Where songs are made (docs/scaling.md): the local worker process or a Ray cluster
    worker_backend: Literal["local", "ray"] = _field(
        "local", "local (one worker process here) or ray (GPU workers on a Ray cluster)"
    )
    ray_address: str = _field("auto", "auto, local, ray://host:port or host:port (a Ray cluster's address)")
    ray_workers: int = _field(1, "an integer number of song workers from 1 to 1024", ge=1, le=1024)
    ray_gpus_per_worker: float = _field(1.0, "a share of one GPU from 0 (CPU only) to 1", ge=0, le=1)
    ray_cpus_per_worker: float = _field(1.0, "a number of CPUs from 0 to 256", ge=0, le=256)
    ray_training_gpus: float = _field(1.0, "a share of one GPU above 0, up to 1", gt=0, le=1)
    shard_count: Annotated[int | None, BeforeValidator(_auto_or_int)] = _field(
        None, "auto (Discord's recommendation) or a number of shards from 1 to 1024", ge=1, le=1024
    )

    # Paths (relative paths are taken from the project folder)
    checkpoint_dir: Path = _field(
        Path("checkpoints"), "a folder: an ACE-Step 1.5 checkpoints/ folder or a diffusers pipeline"
    )
    models_dir: Path = _field(Path("models"), "a folder for GGUF songwriter models")
    data_dir: Path = _field(Path("data"), "a folder for the database, caches and adapters")
    tracks_dir: Path = _field(Path("data/tracks"), "a folder for finished tracks")
    adapters_dir: Path = _field(Path("data/adapters"), "a folder of adapters, one subfolder <name>/ each")
    datasets_dir: Path = _field(Path("data/datasets"), "a folder of training datasets, one subfolder of audio each")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _field("INFO", "DEBUG, INFO, WARNING or ERROR")
    log_file: Annotated[Path | None, BeforeValidator(_empty_is_none)] = _field(
        Path("data/logs/radio.log"), "empty (no log file), or a file for the full log"
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        text = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
            raise ValueError("unknown device")
        return text

    @field_validator("ray_address")
    @classmethod
    def _check_ray_address(cls, value: str) -> str:
        text = value.strip()
        if text.lower() in ("auto", "local"):
            return text.lower()
        if not re.fullmatch(r"(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}", text):
            raise ValueError("not a Ray address")
        return text

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator(
        "quantization",
        "attention_backend",
        "precision",
        "lyrics_rating",
        "worker_backend",
        mode="before",
    )
    @classmethod
    def _lower_choice(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator(
        "checkpoint_dir",
        "models_dir",
        "data_dir",
        "tracks_dir",
        "local_output_dir",
        "adapters_dir",
        "datasets_dir",
        "log_file",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        return value if value.is_absolute() else PROJECT_ROOT / value

    @model_validator(mode="after")
    def _duration_within_max(self) -> Settings:
        if self.default_duration > self.max_length_max:
            raise ValueError(
                f"DEFAULT_DURATION={self.default_duration} is above "
                f"MAX_LENGTH_MAX={self.max_length_max}: allowed is at most MAX_LENGTH_MAX"
            )
        return self

    @property
    def database_path(self) -> Path:
        return self.data_dir / "radio.sqlite3"

    @property
    def secrets(self) -> list[str]:
        """Secret values to scrub from any log line (see engine.logs)."""
        if self.discord_token is None:
            return []
        return [self.discord_token.get_secret_value()]


def _env_key(field_name: str) -> str:
    return field_name.upper()


def _format_error(error: dict[str, Any]) -> str:
    if not error["loc"]:
        # A model validator: its message already names the keys.
        return "Invalid setting: " + str(error["msg"]).removeprefix("Value error, ")
    name = str(error["loc"][0])
    field = Settings.model_fields.get(name)
    allowed = (field.json_schema_extra or {}).get("allowed") if field else None
    shown = "<hidden>" if name == "discord_token" else repr(error.get("input"))
    return f"Invalid setting {_env_key(name)}={shown}: allowed is {allowed or error['msg']}."


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the secret settings (in any case), for a child process."""
    return {key: value for key, value in environ.items() if key.upper() not in SECRET_KEYS}


def drop_secrets_from_environment() -> None:
    """Remove the secret settings from this process's environment once they were read,
    so that no child process (the worker, the trainer, ffmpeg) inherits them."""
    for key in list(os.environ):
        if key.upper() in SECRET_KEYS:
            del os.environ[key]


def default_env_file() -> Path:
    """The `.env` to read: `$RADIO_ENV_FILE` if set, else the project's `.env`."""
    return Path(os.environ.get(ENV_FILE_VARIABLE) or PROJECT_ROOT / ".env")


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from `env_file` (default: `default_env_file()`) and the environment.

    The environment wins over the file. Raises `SettingsError` with one line per
    bad key.
    """
    path = env_file if env_file is not None else default_env_file()
    try:
        return Settings(_env_file=path if path.is_file() else None, **overrides)
    except ValidationError as exc:
        raise SettingsError([_format_error(e) for e in exc.errors()]) from None
