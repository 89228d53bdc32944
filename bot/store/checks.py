"""Input checks of the store: each refusal names the field and what is allowed."""

from __future__ import annotations

import math
import re
from typing import Any

from bot.store.errors import InvalidValueError
from engine.spec import LANGUAGES, RATINGS
from engine.worker.protocol import ADAPTER_NAME_PATTERN, MAX_ADAPTER_SCALE

MAX_THEME_CHARS = 300
MAX_GENRE_CHARS = 100
MAX_STATION_THEME_CHARS = 200  # engine.spec.StationStyle.theme
MAX_MOOD_CHARS = 100
MAX_PRESET_CHARS = 50
MAX_NAME_CHARS = 100
MAX_REASON_CHARS = 100
MIN_STATION_LENGTH = 30
MAX_HISTORY = 100
MAX_QUEUE_LIMIT = 1000
MAX_ID = 2**63 - 1

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ADAPTER_NAME = re.compile(ADAPTER_NAME_PATTERN)
ADAPTER_NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_id(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidValueError(field, value, f"a positive integer id (1 to {MAX_ID})")
    return value


def check_int(field: str, value: Any, low: int, high: int, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidValueError(field, value, f"an integer from {low} to {high}{unit}")
    return value


def check_text(field: str, value: Any, max_chars: int, *, required: bool = False) -> str:
    """Strip `value`; refuse non-text, control characters and more than `max_chars`."""
    need = f"text of 1 to {max_chars}" if required else f"text of at most {max_chars}"
    if not isinstance(value, str):
        raise InvalidValueError(field, value, f"{need} characters")
    text = value.strip()
    if len(text) > max_chars:
        raise InvalidValueError(field, value, f"at most {max_chars} characters, got {len(text)}")
    if required and not text:
        raise InvalidValueError(field, value, f"{need} characters, not empty")
    if _CONTROL.search(text):
        raise InvalidValueError(field, value, "one line of text without control characters")
    return text


def check_optional_id(field: str, value: Any) -> int | None:
    return None if value is None else check_id(field, value)


def check_language(value: Any) -> str:
    if value not in LANGUAGES:
        raise InvalidValueError("language", value, f"one of {', '.join(LANGUAGES)}")
    return value


def check_rating(value: Any) -> str:
    if value not in RATINGS:
        raise InvalidValueError("lyrics_rating", value, f"one of {', '.join(RATINGS)}")
    return value


def check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidValueError(field, value, "true or false")
    return value


def check_adapter_name(value: Any) -> str:
    """A name that is safe as a folder name under ADAPTERS_DIR (no path tricks)."""
    # fullmatch: `$` alone would let a name end in a newline.
    if not isinstance(value, str) or not _ADAPTER_NAME.fullmatch(value):
        raise InvalidValueError("adapter", value, f"a name of {ADAPTER_NAME_RULE}")
    return value


def check_adapter_scale(value: Any) -> float:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and math.isfinite(value) and 0 <= value <= MAX_ADAPTER_SCALE):
        raise InvalidValueError("adapter_scale", value, f"a number from 0 to {MAX_ADAPTER_SCALE:g}")
    return float(value)


def check_seconds(field: str, value: Any, *, positive: bool) -> float:
    """A finite number of seconds: above 0 when `positive`, else 0 or more."""
    allowed = "a number of seconds above 0" if positive else "a number of seconds, 0 or more"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValueError(field, value, allowed)
    if value < 0 or (positive and value == 0):
        raise InvalidValueError(field, value, allowed)
    return float(value)
