"""What the bot shows about taste and favourites: `/radio_taste`, `/radio_favorites`, the
song a listener keeps (`/radio_save`).

Feature names and titles are model output, names are typed by people: all of
it goes through `safe` (no mentions, links or Markdown tricks). Lyrics keep
their lines (`sanitize_text(..., multiline=True)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.render import COLOR, _lines, clock, requester, safe
from bot.store import Favorite, GuildSettings, TrackRecord
from bot.taste.profile import EXPLORE_SHARE, SHOWN, FeatureScore, TasteProfile, lean_from
from engine.text_safety import sanitize_text

DESCRIPTION_LIMIT = 4096  # characters in an embed description (Discord's limit)
#: The evidence in the order it is told, singular and plural.
EVIDENCE_WORDS = {
    "like": ("like", "likes"),
    "dislike": ("dislike", "dislikes"),
    "request": ("request", "requests"),
    "replay": ("replay", "replays"),
    "early skip": ("early skip", "early skips"),
    "late skip": ("late skip", "late skips"),
}


def evidence_text(score: FeatureScore) -> str:
    """`female vocals +1.0 · 9 songs: 7 likes, 2 requests` (the name escaped)."""
    parts = [f"{n} {EVIDENCE_WORDS[kind][n != 1]}" for kind in EVIDENCE_WORDS if (n := score.evidence.get(kind, 0))]
    songs = f"{score.songs} song{'s' if score.songs != 1 else ''}"
    why = f": {', '.join(parts)}" if parts else ""
    sign = "+" if score.score >= 0 else "−"
    return f"**{safe(score.feature.label, 60)}** {sign}{abs(score.score):.1f} · {songs}{why}"


def taste_embed(profile: TasteProfile, settings: GuildSettings) -> discord.Embed:
    """`/radio_taste`: likes and dislikes with their evidence, and what auto songs lean to."""
    embed = discord.Embed(title="What this server likes", colour=COLOR)
    since = f" since the reset <t:{int(settings.taste_since)}:R>" if settings.taste_since else ""
    learning = (
        f"Learning from {profile.songs} song{'s' if profile.songs != 1 else ''}{since}. "
        "A score is what a feature adds to a song's reception: a 👍 is +1, a 👎 −1, "
        "an early skip about −2."
    )
    if not settings.taste:
        learning += " **Taste is off**: auto songs ignore it (`/radio_settings taste: on`)."
    embed.description = learning
    embed.add_field(
        name="Likes", value=_lines([evidence_text(s) for s in profile.likes[:SHOWN]], "nothing clear yet"), inline=False
    )
    dislikes = [evidence_text(s) for s in profile.dislikes[:SHOWN]]
    embed.add_field(name="Dislikes", value=_lines(dislikes, "nothing clear yet"), inline=False)
    embed.add_field(name="Auto songs lean to", value=lean_text(profile, settings), inline=False)
    return embed


def lean_text(profile: TasteProfile, settings: GuildSettings) -> str:
    if not settings.taste:
        return "nothing: taste is off"
    lean = lean_from(profile, settings)
    if lean is None:
        return "nothing yet: react with 👍/👎 on the now-playing message"
    parts = []
    if lean.prefer:
        parts.append("more " + ", ".join(safe(t, 40) for t in lean.prefer))
    if lean.avoid:
        parts.append("less " + ", ".join(safe(t, 40) for t in lean.avoid))
    if lean.bpm is not None:
        parts.append(f"{lean.bpm.low}-{lean.bpm.high} bpm")
    if lean.avoid_bpm:
        parts.append("not " + ", ".join(f"{b.low}-{b.high} bpm" for b in lean.avoid_bpm))
    if lean.mode is not None:
        parts.append(f"{lean.mode} keys")
    share = round(1 / EXPLORE_SHARE)
    return f"{'; '.join(parts)} (one song in {share} explores instead)"


def favorites_embed(favorites: Sequence[Favorite]) -> discord.Embed:
    lines = [
        f"`#{f.record.id}` **{safe(f.record.title, 80)}** — 👍 {f.likes} · 👎 {f.dislikes} · {requester(f.record)}"
        for f in favorites
    ]
    return discord.Embed(
        title="This server's favourites",
        colour=COLOR,
        description=_lines(lines, "no favourites yet: press 👍 on the now-playing message")
        + "\n\nA DJ puts one back in the queue with `/radio_favorites queue:`; "
        "`/radio_save` sends one to you.",
    )


def saved_song_embed(record: TrackRecord, server: str) -> discord.Embed:
    """The DM of `/radio_save`: the song's title, lyrics, caption and seed."""
    spec = record.spec
    lyrics = discord.utils.escape_markdown(sanitize_text(spec.lyrics, 3800, multiline=True))
    embed = discord.Embed(
        title=safe(spec.title, 100) or "Untitled",
        colour=COLOR,
        description=(lyrics or "*(instrumental)*")[:DESCRIPTION_LIMIT],
    )
    embed.set_author(name=f"A song from the radio on {sanitize_text(server, 80)}")
    embed.add_field(name="Caption", value=safe(spec.caption, 900) or "–", inline=False)
    embed.add_field(name="Seed", value=str(record.track.seed), inline=True)
    embed.add_field(name="Length", value=clock(record.duration), inline=True)
    embed.add_field(name="Sound", value=f"{spec.bpm} bpm · {spec.key} · {spec.time_signature}", inline=True)
    adapter = record.track.settings.get("adapter")
    if adapter:
        scale = record.track.settings.get("adapter_scale", 1)
        embed.add_field(name="Adapter", value=f"{safe(str(adapter), 64)} ×{scale:g}", inline=True)
    return embed
