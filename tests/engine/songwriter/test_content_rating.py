"""The lyrics rating's word lists, and the language data every language needs."""

from __future__ import annotations

import pytest

from engine.songwriter.checks import copied_example_line
from engine.songwriter.content_rating import blocked_words, check_theme
from engine.songwriter.language_id import identify, likelier
from engine.songwriter.language_kits import language_kit
from engine.spec import LANGUAGES


@pytest.mark.parametrize(
    ("text", "language", "found"),
    [
        ("Cocaine on the dance floor", "en", ["cocaine"]),
        ("a crack pipe party", "en", ["crack pipe"]),
        ("I want to kill myself tonight", "en", ["kill myself"]),
        ("Je veux me suicider, putain", "fr", ["me suicider", "putain"]),
        ("自殺したい夜", "ja", ["自殺"]),
        ("fuck the rain", "de", ["fuck"]),  # English swearing in any language's song
        ("El cielo negro del infierno", "es", []),  # plain words a list would mark
        ("Și ascultăm cum bate inima", "ro", []),
        ("Dertleri kapıda bırakıyoruz", "tr", []),
        ("Debugging code at three in the morning", "en", []),
        ("the crack of dawn", "en", []),
    ],
)
def test_blocked_words(text: str, language: str, found: list[str]) -> None:
    assert blocked_words(text, language) == found


def test_a_clean_station_cleans_the_theme_and_an_explicit_one_does_not() -> None:
    check = check_theme("a cocaine party in Miami", "en", "clean")
    assert (check.theme, check.removed, check.cleaned) == ("a party in Miami", ("cocaine",), True)
    assert check_theme("a cocaine party", "en", "explicit").theme == "a cocaine party"
    assert check_theme("rainy night", "en", "clean").cleaned is False


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_has_its_kit_in_its_own_language(language: str) -> None:
    kit = language_kit(language)
    assert kit.code == language and kit.name and kit.blocked
    example = kit.example
    assert len(example.verse1) == len(example.chorus) == len(example.verse2) == 4
    assert example.chorus[0].startswith(example.title)
    assert identify("\n".join(example.lines), "any")[0] == language
    assert identify(kit.heading, "any")[0] == language
    assert copied_example_line(example.title, "", kit) == example.title
    low, high = kit.line_chars
    assert all(low <= len(line) <= high for line in example.lines)
    assert not blocked_words("\n".join(example.lines), language)


def test_a_short_title_is_told_from_english() -> None:
    assert likelier("I don't want to see you again", "es", "en") == "en"
    assert likelier("La noche de verano", "es", "en") == "es"
