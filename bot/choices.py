"""Autocomplete for command options: presets, genres, languages.

Suggestions only: a member may still type anything, and the station checks
every value (the store names what is allowed when it refuses one).
"""

from __future__ import annotations

from collections.abc import Iterable

import discord
from discord import app_commands

from bot.presets import PRESETS
from engine.songwriter.genres import GENRES
from engine.spec import LANGUAGES

MAX_CHOICES = 25  # Discord shows at most 25 suggestions

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "sv": "Swedish",
    "vi": "Vietnamese",
    "th": "Thai",
    "id": "Indonesian",
    "ar": "Arabic",
    "hi": "Hindi",
    "uk": "Ukrainian",
    "cs": "Czech",
    "fi": "Finnish",
    "el": "Greek",
    "he": "Hebrew",
    "hu": "Hungarian",
    "ro": "Romanian",
}
assert set(LANGUAGE_NAMES) == set(LANGUAGES), "every vocal language needs a name"

#: Genre suggestions: the presets' genres first, then every genre the songwriter knows.
SUGGESTED_GENRES: tuple[str, ...] = tuple(dict.fromkeys([preset.genre for preset in PRESETS.values()] + list(GENRES)))


def suggest(options: Iterable[tuple[str, str]], current: str) -> list[app_commands.Choice[str]]:
    """The (label, value) options whose label or value contains what was typed."""
    typed = current.strip().casefold()
    found = [
        app_commands.Choice(name=label[:100], value=value)
        for label, value in options
        if typed in label.casefold() or typed in value.casefold()
    ]
    return found[:MAX_CHOICES]


async def presets(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return suggest(((f"{p.name}: {p.description}", p.name) for p in PRESETS.values()), current)


async def genres(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return suggest(((genre, genre) for genre in SUGGESTED_GENRES), current)


async def languages(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return suggest(((f"{LANGUAGE_NAMES[c]} ({c})", c) for c in LANGUAGES), current)
