"""Make untrusted text safe to put in a prompt, a song, or a Discord message.

Listeners' themes and everything a language model writes are untrusted. Before
such text goes anywhere, `sanitize_text` removes what could ping, link, hide or
reorder text:

- Discord mentions: `@everyone`, `@here`, user/role/channel mentions
  (`<@123>`, `<@!123>`, `<@&123>`, `<#123>`), command mentions (`</cmd:123>`),
  and any other `@`;
- links: anything with a scheme (`https://...`, `discord://...`), `www.` and
  bare domains with a common top-level domain (`discord.gg/abc`, `evil.com`);
- control characters (a newline is kept only where `multiline=True`),
  zero-width and other invisible characters, bidirectional overrides and
  isolates (the "RTL trick"), and Unicode tag characters (invisible text that
  some models still read).

Text is NFKC-normalised first, so look-alikes such as a full-width `＠` become
plain ASCII and are caught. Invisible characters are removed *before* mentions
are looked for, so `@\u200beveryone` cannot survive as `@everyone`.

The Discord bot reuses this for everything it echoes; it should still send
messages with `allowed_mentions=none` as a second line of defence.
"""

from __future__ import annotations

import re
import unicodedata

#: Zero-width, invisible and bidirectional formatting characters, and Unicode tags.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0e\ufeff\uffa0\ufff0-\ufffb"
    "\U000e0000-\U000e0fff]"
)
#: C0 and C1 control characters except tab and newline (handled separately).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_DISCORD_MARKUP = re.compile(r"<(?:@[!&]?|#)\d+>|</[^<>\n]{1,64}:\d+>")
_EVERYONE = re.compile(r"@+\s*(?:everyone|here)\b", re.IGNORECASE)
#: No word boundary before a link: `1https://`, `_https://` and `éhttps://` are links too
#: (Discord links whatever precedes the scheme), so the whole word goes.
_URL = re.compile(r"\S*://\S*|(?<![a-z0-9])www\.\S+", re.IGNORECASE)
_TLDS = (
    "com|net|org|gg|io|ly|me|co|xyz|app|dev|tv|ru|de|uk|info|biz|link|site|online|shop|"
    "top|club|live|stream|store|gift|pw|cc|su|to|sh|ai|us|eu|fr|jp|cn|in|br"
)
_BARE_DOMAIN = re.compile(rf"(?<![a-z0-9-])(?:[a-z0-9-]+\.)+(?:{_TLDS})\b(?:/\S*)?", re.IGNORECASE)
#: An absolute path of this machine (POSIX or Windows) with at least one folder in it.
_HOST_PATH = re.compile(r"(?<![\w/.~-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"<>|:*?]+[/\\])+[^\s/\\'\"<>|:*?,;)]*")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")


def sanitize_text(text: str, max_length: int | None = None, *, multiline: bool = False) -> str:
    """Return `text` without mentions, links, control or invisible characters.

    Runs of spaces collapse to one and each line is stripped; with
    `multiline=False` (the default) the result is a single line, otherwise
    newlines are kept and runs of more than one blank line collapse to one.
    The result is cut to `max_length` characters (at a word boundary when one
    is near). Never raises for any `str`; returns `""` when nothing is left.
    """
    if not isinstance(text, str):
        raise TypeError(f"sanitize_text expects a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL.sub(" ", text)
    if not multiline:
        text = text.replace("\n", " ")
    text = _DISCORD_MARKUP.sub(" ", text)
    text = _EVERYONE.sub(" ", text)
    # Every '@' goes before links are looked for, so 'evil.c@om' cannot become a link.
    text = text.replace("@", "")
    text = _URL.sub(" ", text)
    text = _BARE_DOMAIN.sub(" ", text)
    # Removing '@' can join mention markup: `<#12@34>` would become `<#1234>`.
    text = _DISCORD_MARKUP.sub(" ", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if max_length is not None and len(text) > max_length:
        text = _cut(text, max_length)
    return text


def hide_paths(text: str) -> str:
    """Replace each absolute path of the host by `…/` and its last part.

    Error messages from ffmpeg, the trainer or the file system name folders of
    the machine the bot runs on; Discord users should not learn its layout.
    `/tmp/x/data/datasets` becomes `…/datasets`; commands such as `/radio_join`
    and fractions such as `3/10` are left alone.
    """
    return _HOST_PATH.sub(_last_part, text)


def _last_part(match: re.Match[str]) -> str:
    parts = [part for part in re.split(r"[/\\]", match.group(0)) if part]
    return f"…/{parts[-1]}"


def is_safe_text(text: str, *, multiline: bool = False) -> bool:
    """True when `sanitize_text` would leave `text` unchanged (apart from length)."""
    return sanitize_text(text, multiline=multiline) == text


def _cut(text: str, max_length: int) -> str:
    """Cut to `max_length`, preferring the last space in the final fifth."""
    cut = text[:max_length]
    space = cut.rfind(" ")
    if space >= max_length * 4 // 5:
        cut = cut[:space]
    return cut.rstrip()


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, max_length: int = 40, empty: str = "song") -> str:
    """`Rainy Night in Tokyo!` -> `rainy-night-in-tokyo`: safe in a file name on any
    system (ASCII letters, digits and dashes only), at most `max_length` characters;
    `empty` when nothing is left."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")[:max_length].strip("-") or empty
