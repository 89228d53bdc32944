"""The engine's typed settings, read from `.env` and the environment.

Every key keeps the name a user of the 8 GB guide expects (`CPU_OFFLOAD`,
`LLM_GPU_LAYERS`, ...). A wrong value stops start-up with one line per key that
names the key, the value and what is allowed (`SettingsError`); a `SecretStr`
key never shows in `repr`, logs or errors.

The bot's keys (Discord, station, queue limits) live in `bot.settings.BotSettings`,
a subclass read from the same `.env`. Child processes get the engine keys alone
and build their settings from them without reading `.env`, so they never see a
bot key: the GPU worker and Ray song workers through their config (`engine_values`,
`settings_from_values`), the bot's trainer through its environment
(`child_environment`). `without_secrets` keeps the token out of every child's
environment.

Keys whose default depends on the GPU (`CPU_OFFLOAD`, `DIT_OFFLOAD`,
`QUANTIZATION`, `TORCH_COMPILE`, `LLM_GPU_LAYERS`) accept `auto`, which
`engine.gpu.tiers.resolve` turns into the tier's policy.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_FILE_VARIABLE = "RADIO_ENV_FILE"
#: Set for a child process (the trainer) by its parent: the parent's engine values as
#: JSON, which the child's `load_settings` takes instead of reading `.env`.
INHERITED_SETTINGS_VARIABLE = "RADIO_ENGINE_SETTINGS"
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


def _empty_is_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


AutoSwitch = Annotated[bool | None, BeforeValidator(_tri_state)]
#: For `Annotated[X | None, EmptyIsNone]`: an empty value means None.
EmptyIsNone = BeforeValidator(_empty_is_none)
#: For `Annotated[int | None, AutoIsNone]`: `auto` or an empty value means None.
AutoIsNone = BeforeValidator(_auto_or_int)
Switch = Annotated[bool, BeforeValidator(_strict_bool)]

_SWITCH = "true or false (also yes/no, on/off, 1/0)"
_AUTO_SWITCH = "auto, true or false (also yes/no, on/off, 1/0)"


def setting(default: Any, allowed: str, **constraints: Any) -> Any:
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

    # Device and memory policy (engine/gpu/tiers.py)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    max_cuda_vram: Annotated[float | None, EmptyIsNone] = setting(
        None, "empty, or a number of GB from 1 to 1024", ge=1, le=1024
    )
    cpu_offload: AutoSwitch = setting(None, _AUTO_SWITCH)
    dit_offload: AutoSwitch = setting(None, _AUTO_SWITCH)
    quantization: Literal["auto", "none", "int8"] = setting("auto", "auto, none or int8")
    torch_compile: AutoSwitch = setting(None, _AUTO_SWITCH)
    overlapped_decode: Switch = setting(True, _SWITCH)
    attention_backend: Literal["auto", "sdpa", "flash_attention_2"] = setting("auto", "auto, sdpa or flash_attention_2")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting("auto", "auto, bf16, fp16 or fp32")

    # Songwriter LLM
    llm_model_name: str = setting(
        "auto",
        "auto (the GPU tier's recommended model once downloaded, else the bundled one), "
        "a GGUF file name in MODELS_DIR, or a path to a .gguf file",
        min_length=1,
    )
    llm_gpu_layers: Annotated[int | None, AutoIsNone] = setting(
        None, "auto, -1 (all layers on the GPU), 0 (CPU only) or a number of layers", ge=-1
    )
    llm_context_size: int = setting(2048, "an integer from 512 to 131072", ge=512, le=131072)
    llm_threads: Annotated[int | None, AutoIsNone] = setting(
        None, "auto or a number of CPU threads from 1 to 256", ge=1, le=256
    )
    llm_timeout: float = setting(60.0, "a number of seconds from 5 to 600", ge=5, le=600)

    # Songs
    lyrics_rating: Literal["clean", "explicit"] = setting(
        "clean", "clean (no swearing, sex, drugs, slurs or self-harm) or explicit"
    )
    default_duration: int = setting(
        60, "an integer number of seconds from 10 to 600, not above MAX_LENGTH_MAX", ge=10, le=600
    )
    max_length_max: int = setting(300, "an integer number of seconds from 30 to 600", ge=30, le=600)
    batch_size: int = setting(1, "an integer from 1 to 8", ge=1, le=8)
    loudness_target: float = setting(-14.0, "a loudness in LUFS from -40 to -5 (EBU R128)", ge=-40, le=-5)

    # GPU worker process (engine/worker/process.py)
    worker_max_in_flight: int = setting(2, "an integer from 1 to 4", ge=1, le=4)
    worker_max_adapters: int = setting(4, "an integer from 1 to 64: adapters the worker keeps loaded", ge=1, le=64)
    worker_stall_timeout: float = setting(600.0, "a number of seconds from 30 to 3600", ge=30, le=3600)

    # Where songs are made (docs/scaling.md): the local worker process or a Ray cluster
    worker_backend: Literal["local", "ray"] = setting(
        "local", "local (one worker process here) or ray (GPU workers on a Ray cluster)"
    )
    ray_address: str = setting("auto", "auto, local, ray://host:port or host:port (a Ray cluster's address)")
    ray_workers: int = setting(1, "an integer number of song workers from 1 to 1024", ge=1, le=1024)
    ray_gpus_per_worker: float = setting(1.0, "a share of one GPU from 0 (CPU only) to 1", ge=0, le=1)
    ray_cpus_per_worker: float = setting(1.0, "a number of CPUs from 0 to 256", ge=0, le=256)
    ray_training_gpus: float = setting(1.0, "a share of one GPU above 0, up to 1", gt=0, le=1)

    # Paths (relative paths are taken from the project folder)
    checkpoint_dir: Path = setting(
        Path("checkpoints"), "a folder: an ACE-Step 1.5 checkpoints/ folder or a diffusers pipeline"
    )
    models_dir: Path = setting(Path("models"), "a folder for GGUF songwriter models")
    data_dir: Path = setting(Path("data"), "a folder for the database, caches and adapters")
    tracks_dir: Path = setting(Path("data/tracks"), "a folder for finished tracks")
    adapters_dir: Path = setting(Path("data/adapters"), "a folder of adapters, one subfolder <name>/ each")
    datasets_dir: Path = setting(Path("data/datasets"), "a folder of training datasets, one subfolder of audio each")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    log_file: Annotated[Path | None, EmptyIsNone] = setting(
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
        "adapters_dir",
        "datasets_dir",
        "log_file",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return project_path(value)

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
        """Secret values (every `SecretStr` key that is set) to scrub from any log line
        (see engine.logs)."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return [value.get_secret_value() for value in values if isinstance(value, SecretStr)]


AnySettings = TypeVar("AnySettings", bound=Settings)


def project_path(value: Path | None) -> Path | None:
    """`value` with `~` expanded, relative paths taken from the project folder."""
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else PROJECT_ROOT / value


def _is_secret(cls: type[Settings], name: str) -> bool:
    field = cls.model_fields.get(name)
    return field is not None and (field.annotation is SecretStr or SecretStr in get_args(field.annotation))


def _format_error(error: Mapping[str, Any], cls: type[Settings]) -> str:
    if not error["loc"]:
        # A model validator: its message already names the keys.
        return "Invalid setting: " + str(error["msg"]).removeprefix("Value error, ")
    name = str(error["loc"][0])
    field = cls.model_fields.get(name)
    allowed = (field.json_schema_extra or {}).get("allowed") if field else None
    shown = "<hidden>" if _is_secret(cls, name) else repr(error.get("input"))
    return f"Invalid setting {name.upper()}={shown}: allowed is {allowed or error['msg']}."


def _validated(cls: type[AnySettings], env_file: Path | None, values: Mapping[str, Any]) -> AnySettings:
    """`cls` from `values`, the environment and `env_file` (None: no file), in that order
    of precedence; `SettingsError` with one line per bad key."""
    try:
        return cls(_env_file=env_file, **values)
    except ValidationError as exc:
        raise SettingsError([_format_error(e, cls) for e in exc.errors()]) from None


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


def load_settings(env_file: Path | None = None, *, cls: type[AnySettings] = Settings, **overrides: Any) -> AnySettings:
    """Read `cls` settings (default: the engine's) from `env_file` (default:
    `default_env_file()`) and the environment.

    `overrides` win over the environment, which wins over the file. A child process
    given its parent's engine values (`child_environment`) takes those instead of
    `.env`. Raises `SettingsError` with one line per bad key.
    """
    inherited = os.environ.get(INHERITED_SETTINGS_VARIABLE)
    if inherited and env_file is None and cls is Settings:
        return settings_from_values({**_inherited_values(inherited), **overrides})
    path = env_file if env_file is not None else default_env_file()
    return _validated(cls, path if path.is_file() else None, overrides)


def _inherited_values(text: str) -> dict[str, Any]:
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise SettingsError([f"Invalid setting {INHERITED_SETTINGS_VARIABLE}: allowed is a JSON object of settings."])
    return values


def engine_values(settings: Settings) -> dict[str, Any]:
    """The engine keys of `settings` (whatever subclass it is) as plain JSON values:
    what a child process gets, never a bot key."""
    return settings.model_dump(mode="json", include=set(Settings.model_fields))


def child_environment(settings: Settings) -> dict[str, str]:
    """Environment entries that hand the engine keys of `settings` to a child process
    whose `load_settings` then never reads `.env` (the bot's trainer)."""
    return {INHERITED_SETTINGS_VARIABLE: json.dumps(engine_values(settings))}


def settings_from_values(values: Mapping[str, Any]) -> Settings:
    """Engine settings from `values` (as `engine_values` makes them) over the
    environment, never reading `.env`: a child process's settings are its parent's."""
    return _validated(Settings, None, values)
