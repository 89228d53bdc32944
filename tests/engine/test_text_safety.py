"""sanitize_text: what could ping, link, hide or reorder text never survives."""

from __future__ import annotations

import pytest

from engine.text_safety import hide_paths, is_safe_text, sanitize_text

HOSTILE = [
    "@everyone free nitro",
    "@here come quick",
    "@EVERYONE shouting",
    "＠everyone full-width",
    "﹫here small at sign",
    "@\u200beveryone zero-width split",
    "@\u2060here word joiner split",
    "@\u202eenoyreve reversed",
    "ping <@123456789012345678> and <@!42>",
    "role <@&987654321> channel <#555>",
    "command </ban:123456>",
    "visit https://evil.example/phish?x=1",
    "HTTP://EVIL.COM upper case",
    "discord://-/channels/1/2",
    "join discord.gg/abcdef now",
    "see www.example.org/page",
    "mail me at bob@evil.com",
    "split link evil.c@om",
    "rtl \u202egnp.exe\u202c trick",
    "isolate \u2066hidden\u2069 text",
    "tags \U000e0049\U000e0047\U000e004e\U000e004f\U000e0052\U000e0045 smuggled",
    "null\x00byte and bell\x07 and esc\x1b[31m",
    "c1 control \x85 \x9b",
    "line\u2028separator\u2029paragraph",
    "\ufeffbom at start",
    "glued 1https://evil.example/x scheme",
    "underscore _https://evil.example/x",
    "accent éhttps://evil.example/x",
    "glued _www.evil.example host",
    "joined by an at sign <#12@34>",
    "joined role <@&12@34> mention",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_comes_out_safe(text: str) -> None:
    clean = sanitize_text(text)
    assert "@" not in clean and "＠" not in clean
    assert "://" not in clean and "www." not in clean.lower()
    for host in ("evil.com", "discord.gg", "example.org", "evil.example"):
        assert host not in clean.lower()
    assert "<@" not in clean and "<#" not in clean and "</" not in clean
    assert all(ch.isprintable() for ch in clean), repr(clean)
    assert is_safe_text(clean)
    assert sanitize_text(clean) == clean  # idempotent


def test_mentions_and_links_are_removed_but_words_stay() -> None:
    text = "Hello <@123> and @everyone, listen to https://x.io/a - it rocks"
    assert sanitize_text(text) == "Hello and , listen to - it rocks"


def test_zero_width_is_removed_before_mentions_are_looked_for() -> None:
    assert sanitize_text("@\u200be\u200bv\u200beryone hi") == "hi"


def test_full_width_look_alikes_are_normalised() -> None:
    assert sanitize_text("ｈｅｌｌｏ　ｗｏｒｌｄ") == "hello world"


def test_one_line_by_default_multiline_keeps_newlines() -> None:
    text = "first\r\nsecond\n\n\n\nthird\t tab"
    assert sanitize_text(text) == "first second third tab"
    assert sanitize_text(text, multiline=True) == "first\nsecond\n\nthird tab"


def test_length_cap_prefers_a_word_boundary() -> None:
    text = "word " * 3000  # 15 000 characters
    clean = sanitize_text(text, 100)
    assert len(clean) <= 100 and clean.endswith("word")
    assert len(sanitize_text("x" * 10_000, 200)) == 200


def test_ordinary_text_and_other_scripts_are_unchanged() -> None:
    samples = ["Rainy night in Tokyo", "東京の雨の夜", "Ночь в Москве", "ليلة ممطرة", "Café, 5am"]
    for text in samples:
        assert sanitize_text(text) == text


def test_empty_and_blank_text_give_empty() -> None:
    assert sanitize_text("") == ""
    assert sanitize_text(" \u200b\u202e\n\t ") == ""


def test_non_text_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="expects a str"):
        sanitize_text(None)  # type: ignore[arg-type]


def test_host_paths_are_hidden_but_commands_and_fractions_stay() -> None:
    text = "cannot read '/srv/radio/data/datasets/tones' (C:\\Users\\bob\\x.wav); try /radio_join"
    assert hide_paths(text) == "cannot read '…/tones' (…/x.wav); try /radio_join"
    assert hide_paths("step 3/10, epoch 1/2") == "step 3/10, epoch 1/2"
    assert hide_paths("at /home/u/dir/ now") == "at …/dir now"
