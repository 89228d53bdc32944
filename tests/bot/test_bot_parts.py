"""The bot's pure parts: rendering (safe text, progress, stats), vote thresholds, who is
a DJ, upload checks. The end-to-end tests (test_bot.py) drive them through Discord."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
from discord import app_commands

from bot.permissions import MANAGE_SERVER, anyone, describe_dj_role, dj_only, is_dj, role_matches, trainer_only
from bot.render import NowPlaying, clock, now_playing_embed, progress_bar, safe, stats_embed
from bot.store import RequesterCount, StationStats, TrackRecord
from bot.uploads import UploadError, check_attachment, prepare_upload
from bot.votes import votes_needed
from engine.spec import SongSpec, Track


def record(title: str, caption: str, requester: str | None = None) -> TrackRecord:
    spec = SongSpec(title=title, caption=caption, bpm=90, key="A minor", duration=60)
    track = Track(
        path="/x.ogg",
        spec=spec,
        duration=61.0,
        sample_rate=48000,
        seed=1,
        timings={"dit": 4.0},
        peak_memory_mb=None,
        settings={},
    )
    return TrackRecord(
        id=1,
        guild_id=5,
        job_id=3,
        path=Path("/x.ogg"),
        track=track,
        requester_id=9 if requester else None,
        requester_name=requester,
        duration=61.0,
        generation_seconds=4.0,
        size_bytes=10,
        status="playing",
        created_at=0.0,
    )


def test_model_written_text_cannot_ping_link_or_format() -> None:
    now = NowPlaying(
        record(
            "@everyone **Free** <@123>",
            "visit discord.gg/abc or https://evil.com _now_",
            requester="<@&42> @here",
        ),
        elapsed=30.5,
    )
    embed = now_playing_embed(now).to_dict()
    shown = str(embed)
    for bad in ("@everyone", "@here", "<@123>", "<@&42>", "discord.gg", "evil.com", "https"):
        assert bad not in shown
    assert embed["title"] == r"\*\*Free\*\*"
    assert embed["description"] == r"visit or \_now\_"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Length"] == "1:01" and fields["Made in"] == "4.0 s (15.2x real time)"
    assert fields["Progress"] == progress_bar(30.5, 61.0) and "0:30 / 1:01" in fields["Progress"]
    assert embed["footer"]["text"] == "90 bpm · A minor · 4/4 · instrumental"
    assert safe("a\u202eb @x", 10) == "ab x"


def test_progress_bar_and_clock() -> None:
    assert progress_bar(0, 60, width=4) == "▱▱▱▱ 0:00 / 1:00"
    assert progress_bar(45, 60, width=4) == "▰▰▰▱ 0:45 / 1:00"
    assert progress_bar(99, 60, width=4) == "▰▰▰▰ 1:00 / 1:00"
    assert clock(3725) == "1:02:05" and clock(-3) == "0:00"


def test_stats_render_every_figure_readably() -> None:
    stats = StationStats(
        guild_id=5,
        songs_generated=12,
        songs_played=30,
        audio_seconds=725.0,
        generation_p50=8.25,
        generation_p90=11.0,
        generation_p99=None,
        mean_real_time_factor=6.5,
        underruns=2,
        failures_by_reason={"oom": 3},
        top_requesters=[RequesterCount(7, "@everyone ann", 4)],
    )
    fields = {f["name"]: f["value"] for f in stats_embed(stats).to_dict()["fields"]}
    assert fields["Songs made"] == "12" and fields["Music made"] == "12:05"
    assert fields["Time to make a song"] == "median 8.2 s, 90% within 11.0 s, 99% within –"
    assert fields["Speed"] == "6.5x real time on average"
    assert fields["Failed attempts"] == "oom: 3" and fields["Top requesters"] == "1. ann: 4"


@pytest.mark.parametrize(
    ("listeners", "ratio", "needed"),
    [(0, 0.5, 1), (1, 0.5, 1), (2, 0.5, 1), (3, 0.5, 2), (4, 0.5, 2), (10, 0.3, 3), (3, 1, 3)],
)
def test_votes_needed_rounds_up_and_is_at_least_one(listeners, ratio, needed) -> None:
    assert votes_needed(listeners, ratio) == needed


def test_votes_needed_refuses_bad_ratios() -> None:
    with pytest.raises(ValueError, match="above 0, up to 1"):
        votes_needed(3, 0)


class Role(discord.Object):
    def __init__(self, role_id: int, name: str):
        super().__init__(id=role_id)
        self.name = name


def test_dj_is_manage_server_or_the_guilds_role_else_the_default_one() -> None:
    nobody = discord.Permissions.none()
    dj, mods = Role(1, "DJ"), Role(2, "Mods")
    assert is_dj([], discord.Permissions(manage_guild=True), None, "DJ")
    assert is_dj([], discord.Permissions(administrator=True), 2, "DJ")
    assert is_dj([dj], nobody, None, "dj")  # the name, any case
    assert is_dj([dj], nobody, None, "1")  # or the id
    assert not is_dj([dj], nobody, 2, "DJ")  # the guild's own role replaces DJ_ROLE
    assert is_dj([mods], nobody, 2, "DJ")
    assert not is_dj([dj], nobody, None, "")  # empty DJ_ROLE: Manage Server only
    assert not role_matches(dj, "  ")
    assert describe_dj_role(None, None, "") == "none (Manage Server only)"
    assert describe_dj_role(None, 7, "DJ") == "<@&7>"


def test_uploads_are_checked_before_and_after_download(tmp_path: Path) -> None:
    check_attachment("song.MP3", 1000, 2000)
    with pytest.raises(UploadError, match=r"allowed are \.mp3"):
        check_attachment("song.exe", 10, 2000)
    with pytest.raises(UploadError, match="at most 0 MB"):
        check_attachment("song.mp3", 3000, 2000)
    with pytest.raises(UploadError, match="empty"):
        check_attachment("song.mp3", 0, 2000)
    with pytest.raises(UploadError, match="not WAV audio, as its name says"):
        prepare_upload(b"not audio at all", "x.wav", tmp_path, 2000, 60)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


async def _command_body(interaction: discord.Interaction) -> None:
    del interaction


def test_a_level_goes_above_its_command_once_and_asks_what_its_group_asks() -> None:
    with pytest.raises(TypeError, match=r"put @dj_only above @app_commands\.command"):
        dj_only(_command_body)
    command = dj_only(app_commands.command(name="radio_x", description="x")(_command_body))
    assert command.default_permissions == MANAGE_SERVER and command.guild_only
    assert command.checks == [dj_only.check]
    with pytest.raises(TypeError, match="declares who may run it twice"):
        anyone(command)
    listening = anyone(app_commands.command(name="radio_y", description="y")(_command_body))
    assert listening.default_permissions is None and listening.checks == []
    open_group = app_commands.Group(name="radio_g", description="g")
    with pytest.raises(TypeError, match="give its group guild_only"):
        trainer_only(open_group.command(name="sub", description="s")(_command_body))
    group = app_commands.Group(name="radio_h", description="h", guild_only=True, default_permissions=MANAGE_SERVER)
    assert trainer_only(group.command(name="sub", description="s")(_command_body)).checks == [trainer_only.check]
