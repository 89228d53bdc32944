"""Named station styles (`/radio_preset`): a genre and a mood in one word."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StylePreset:
    name: str
    description: str
    genre: str
    mood: str


PRESETS: dict[str, StylePreset] = {
    preset.name: preset
    for preset in (
        StylePreset("lofi", "lo-fi beats to study to", "lofi hip hop", "calm, warm, dusty"),
        StylePreset("synthwave", "neon nights and analog synths", "synthwave", "nostalgic"),
        StylePreset("jazz", "a smoky late-night club", "jazz", "smooth, late night"),
        StylePreset("rock", "guitars up front", "rock", "energetic, raw"),
        StylePreset("pop", "bright radio pop", "pop", "upbeat, catchy"),
        StylePreset("ambient", "slow, spacious, no hurry", "ambient", "dreamy, spacious"),
        StylePreset("folk", "acoustic stories", "folk", "warm, honest"),
        StylePreset("shanty", "songs to haul ropes by", "sea shanty", "rowdy, joyful"),
    )
}
