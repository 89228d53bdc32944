"""What the bot shows: embeds and lines for now playing, queue, history, stats, settings, help.

Everything here is a pure function of the station's data. Text a model wrote
(titles, captions) or a listener typed (themes, names) is untrusted: it goes
through `safe`, which strips mentions, links and invisible characters
(`engine.text_safety.sanitize_text`) and escapes Markdown. Messages are also
sent with `AllowedMentions.none()` (the bot's default), so nothing can ping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.adapter_library import key_name
from bot.station import StationStatus
from bot.store import GuildSettings, Job, Play, ReceptionWindow, StationStats, TrackRecord
from engine.text_safety import hide_paths, sanitize_text

COLOR = discord.Colour.from_rgb(88, 101, 242)
BAR_WIDTH = 18
MAX_LIST = 10  # lines in a queue or history list
FIELD_LIMIT = 1024  # characters in an embed field (Discord's limit)


def safe(text: str | None, limit: int = 200) -> str:
    """Untrusted text made safe to show: no mentions, links, Markdown tricks or host paths."""
    return discord.utils.escape_markdown(sanitize_text(hide_paths(text or ""), limit))


def clock(seconds: float) -> str:
    """`3:05`, or `1:02:03` past an hour."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_bar(elapsed: float, total: float, width: int = BAR_WIDTH) -> str:
    """`▰▰▰▰▱▱▱▱ 1:02 / 3:00`: how far the track has played."""
    share = min(1.0, max(0.0, elapsed / total)) if total > 0 else 0.0
    done = round(share * width)
    return f"{'▰' * done}{'▱' * (width - done)} {clock(min(elapsed, total))} / {clock(total)}"


def requester(record: TrackRecord) -> str:
    if record.requester_name:
        return safe(record.requester_name, 100)
    return "the station (auto mode)" if record.job_id is not None else "nobody (uploaded)"


@dataclass(frozen=True)
class NowPlaying:
    """A track as it plays: how far along, paused or not, fresh or a replay."""

    record: TrackRecord
    elapsed: float
    paused: bool = False
    replay: bool = False


def now_playing_embed(now: NowPlaying) -> discord.Embed:
    record = now.record
    spec = record.spec
    state = "Paused" if now.paused else "Now playing"
    if now.replay:
        state += " (from the library)"
    embed = discord.Embed(title=safe(spec.title, 100) or "Untitled", colour=COLOR)
    embed.set_author(name=state)
    embed.description = safe(spec.caption, 400)
    embed.add_field(name="Asked for by", value=requester(record), inline=True)
    embed.add_field(name="Length", value=clock(record.duration), inline=True)
    generated = record.generation_seconds
    embed.add_field(
        name="Made in",
        value=f"{generated:.1f} s ({record.real_time_factor:.1f}x real time)"
        if record.job_id is not None
        else "uploaded",
        inline=True,
    )
    embed.add_field(name="Progress", value=progress_bar(now.elapsed, record.duration), inline=False)
    details = [f"{spec.bpm} bpm", spec.key, spec.time_signature]
    details.append("instrumental" if spec.instrumental else spec.language)
    adapter = record.track.settings.get("adapter")
    if adapter:
        scale = record.track.settings.get("adapter_scale", 1)
        details.append(f"adapter {key_name(adapter)} ×{scale:g}")
    embed.set_footer(text=" · ".join(details))
    return embed


def job_line(job: Job, doing: str | None) -> str:
    who = safe(job.requester_name, 60) if job.requester_name else "auto"
    what = safe(job.theme, 80) or "the station's theme"
    extra = [f"{job.length} s"] if job.length else []
    if job.genre:
        extra.append(safe(job.genre, 40))
    suffix = f" ({', '.join(extra)})" if extra else ""
    return f"{what}{suffix} — {who}" + (f" · *{doing}*" if doing else "")


def queue_embed(status: StationStatus) -> discord.Embed:
    embed = discord.Embed(title="Radio queue", colour=COLOR, description=status_text(status))
    if status.now_playing is not None:
        embed.add_field(name="Playing", value=safe(status.now_playing.track.title, 100), inline=False)
    ready = [
        f"{i}. {safe(t.title, 80)} ({clock(t.duration)}) — {requester(t)}"
        for i, t in enumerate(status.buffered[:MAX_LIST], 1)
    ]
    embed.add_field(name=f"Ready to play ({len(status.buffered)})", value=_lines(ready, "nothing yet"), inline=False)
    making = [job for job in status.queue if job.status != "queued"]
    queued = [job for job in status.queue if job.status == "queued"]
    embed.add_field(
        name=f"Being made ({len(making)})",
        value=_lines([job_line(j, status.making.get(j.id, j.status)) for j in making], "nothing"),
        inline=False,
    )
    waiting = [f"{i}. {job_line(j, None)}" for i, j in enumerate(queued[:MAX_LIST], 1)]
    embed.add_field(name=f"Waiting ({len(queued)})", value=_lines(waiting, "nothing"), inline=False)
    return embed


def status_text(status: StationStatus) -> str:
    lines = [safe(status.message, 300)]
    lines += [f"*{safe(note, 300)}*" for note in status.notes]
    return "\n".join(lines)


def history_embed(plays: Sequence[Play]) -> discord.Embed:
    lines = []
    for play in plays:
        how = {"skipped": " (skipped)", "interrupted": " (interrupted)"}.get(play.outcome or "", "")
        if play.ended_at is None:
            how = " (playing)"
        replay = " · replay" if play.source == "replay" else ""
        lines.append(
            f"<t:{int(play.started_at)}:t> `#{play.track.id}` {safe(play.track.title, 80)} — "
            f"{requester(play.track)}{replay}{how}"
        )
    return discord.Embed(title="Recently played", colour=COLOR, description=_lines(lines, "nothing played yet"))


def stats_embed(stats: StationStats, workers: str | None = None) -> discord.Embed:
    """`/radio_stats`; `workers` says how the song workers are doing (the backend's summary)."""

    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f} s"

    embed = discord.Embed(title="Radio stats", colour=COLOR)
    embed.add_field(name="Songs made", value=str(stats.songs_generated), inline=True)
    embed.add_field(name="Songs played", value=str(stats.songs_played), inline=True)
    embed.add_field(name="Music made", value=clock(stats.audio_seconds), inline=True)
    embed.add_field(
        name="Time to make a song",
        value=f"median {seconds(stats.generation_p50)}, 90% within "
        f"{seconds(stats.generation_p90)}, 99% within {seconds(stats.generation_p99)}",
        inline=False,
    )
    factor = stats.mean_real_time_factor
    embed.add_field(
        name="Speed",
        value="–" if factor is None else f"{factor:.1f}x real time on average",
        inline=True,
    )
    embed.add_field(name="Silences (buffer ran dry)", value=str(stats.underruns), inline=True)
    failures = [f"{safe(reason, 60)}: {count}" for reason, count in stats.failures_by_reason.items()]
    embed.add_field(name="Failed attempts", value=_lines(failures, "none"), inline=False)
    if workers is not None:
        embed.add_field(name="Song workers", value=safe(workers, 200), inline=False)
    top = [f"{i}. {safe(r.name, 60) or r.user_id}: {r.songs}" for i, r in enumerate(stats.top_requesters, 1)]
    embed.add_field(name="Top requesters", value=_lines(top, "no requests yet"), inline=False)
    embed.add_field(
        name="Reception (newest first)",
        value=_lines([reception_line(i, w) for i, w in enumerate(stats.reception)], "no plays yet"),
        inline=False,
    )
    return embed


def reception_line(index: int, window: ReceptionWindow) -> str:
    """`last 20 songs: 75% 👍 (9 of 12 votes), 10% skipped`."""
    which = f"last {window.plays}" if index == 0 else f"{window.plays} before"
    ratio = window.like_ratio
    votes = window.likes + window.dislikes
    liked = "no votes" if ratio is None else f"{ratio:.0%} 👍 ({window.likes} of {votes} votes)"
    return f"{which} songs: {liked}, {window.skip_rate:.0%} skipped"


def settings_embed(settings: GuildSettings, dj_role: str, vote_ratio: float, lyrics_rating: str) -> discord.Embed:
    """The station's settings; `dj_role` is already rendered (a mention or a name),
    `lyrics_rating` is the one in force (the station's, else LYRICS_RATING)."""
    embed = discord.Embed(title="Station settings", colour=COLOR)
    embed.add_field(name="Auto mode", value="on" if settings.auto_mode else "off", inline=True)
    embed.add_field(name="Preset", value=safe(settings.preset, 50) or "none", inline=True)
    embed.add_field(name="Genre", value=safe(settings.genre, 100) or "–", inline=True)
    embed.add_field(name="Theme", value=safe(settings.theme, 200) or "none", inline=True)
    embed.add_field(name="Style", value=safe(settings.mood, 100) or "none", inline=True)
    embed.add_field(name="Language", value=settings.language, inline=True)
    own = "" if settings.lyrics_rating else " (LYRICS_RATING)"
    embed.add_field(name="Lyrics", value=f"{lyrics_rating}{own}", inline=True)
    embed.add_field(name="Longest song", value=f"{settings.max_length} s", inline=True)
    embed.add_field(name="DJ role", value=dj_role, inline=True)
    adapter = "none (the base model)"
    if settings.adapter:
        adapter = f"{safe(key_name(settings.adapter), 64)} ×{settings.adapter_scale:g}"
    embed.add_field(name="Adapter", value=adapter, inline=True)
    embed.add_field(
        name="Now-playing channel",
        value=f"<#{settings.text_channel_id}>" if settings.text_channel_id else "not set",
        inline=True,
    )
    embed.add_field(name="Vote-skip", value=f"{vote_ratio:.0%} of the listeners", inline=True)
    taste = "on: auto songs lean to it" if settings.taste else "off"
    if settings.taste_since:
        taste += f" (reset <t:{int(settings.taste_since)}:R>)"
    embed.add_field(name="Taste", value=taste, inline=True)
    return embed


@dataclass(frozen=True)
class CommandHelp:
    name: str
    description: str
    #: Who may run it: the heading it is listed under (bot.permissions).
    who: str


def help_embed(headings: Sequence[str], commands: Sequence[CommandHelp]) -> discord.Embed:
    """The commands under their headings, in the headings' order (empty ones left out)."""
    parts = [
        "Join a voice channel and run `/radio_join`; ask for a song with `/radio_request`. "
        "Each heading says who may use its commands."
    ]
    for heading in headings:
        listed = [f"`/{c.name}` {c.description}" for c in commands if c.who == heading]
        if listed:
            parts += [f"**{heading}**", *listed]
    return discord.Embed(title="Radio commands", colour=COLOR, description="\n".join(parts))


def _lines(lines: Sequence[str], empty: str) -> str:
    """Join lines into one embed field, dropping what does not fit."""
    text = ""
    for i, line in enumerate(lines):
        more = f"\n… and {len(lines) - i} more"
        candidate = f"{text}\n{line}" if text else line
        if len(candidate) + len(more) > FIELD_LIMIT:
            return text + more
        text = candidate
    return text or empty
