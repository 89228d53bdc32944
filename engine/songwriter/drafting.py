"""One draft of a song by the model, written in grammar-shaped steps.

1. The title, with the theme's words made more likely (`THEME_BOOST`) when
   the theme is in the lyrics' language: the hook grows from the theme.
2. The songwriter writes the `[Verse 1]` tag (`engine.songwriter.song_form`);
   the model, the verse's lines.
3. The songwriter writes the `[Chorus]` tag and the title as the chorus's
   first words; the model goes on from there: the rest of that line and the
   chorus's other lines.
4. `[Verse 2]` and its lines, and in long songs a `[Bridge]` of two lines.

Each step continues the text of the last, so the model only evaluates what is
new (`GGUFModel.complete` keeps its cache). In every step, every run of four
tokens from the worked example is banned (`Steering.banned`): a small model
copies what it sees, and now it cannot copy a line. Nor can it repeat its own
lines (the chorus repeats because the songwriter repeats it, not the model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.songwriter.checks import theme_words
from engine.songwriter.cleanup import clean_title
from engine.songwriter.gguf_model import Completion, GGUFModel, Sampling, Steering
from engine.songwriter.grammar import TITLE_CHARS, hook_grammar, lines_grammar, title_grammar
from engine.songwriter.language_kits import LanguageKit
from engine.songwriter.prompt import Prompt, SongBrief, chat_prompt, few_shot_prompt
from engine.songwriter.song_form import section_tags
from engine.songwriter.word_lists import DANGLING, ENGLISH_WORDS

#: Logit bonus for the theme's words while the title is written.
THEME_BOOST = 3.0
#: Logit malus for the worked example's words: a small model reuses them
#: ("Durch Felder die im Dämonen" after "Durch Felder, die im Dunkeln ruhn").
EXAMPLE_PENALTY = -2.0
#: Logit malus for common English words in songs in other languages: a
#: listener's English theme pulls a small model into English.
ENGLISH_PENALTY = -5.0
#: Length of the worked example's token runs that are banned, and of the
#: model's own runs that it may not repeat.
EXAMPLE_NGRAM, NGRAM = 3, 4
_CJK = {"zh", "ja", "ko", "th"}


@dataclass(frozen=True)
class Draft:
    """What the model wrote (`body`: the sections after the title) and what it cost.
    `finish` is "stop" when every step ended as the grammar allows."""

    title: str
    body: str
    finish: str
    tokens: int
    prompt_tokens: int
    evaluated: int
    prompt_seconds: float
    seconds: float


class Drafter:
    """Writes drafts with one model; keeps each language's banned n-grams."""

    def __init__(self, model: GGUFModel):
        self.model = model
        self._banned: dict[str, frozenset[tuple[int, ...]]] = {}

    def draft(
        self,
        brief: SongBrief,
        *,
        seed: int,
        attempt: int,
        deadline: float,
        title_only: bool,
        max_tokens: int = 400,
    ) -> Draft:
        """Write a title and (unless `title_only`) the sections, in at most
        `max_tokens` tokens; `attempt` (from 1) raises the temperature."""
        model = self.model
        prompt = self._prompt(brief)
        temperature = 0.7 + (seed % 6) * 0.05 + (attempt - 1) * 0.15
        banned = self._banned_ngrams(brief.kit)
        steps: list[Completion] = []

        # Away from English (unless the song is English) and from the example's words.
        nudges = _merged(self._english_penalties(brief.language), self._example_penalties(brief))
        soft_line = _typical_line(brief.kit)

        def step(text: str, grammar: str, offset: int, cap: int, boosts=None) -> str:
            left = max_tokens - sum(s.tokens for s in steps)
            sampling = Sampling(seed=(seed + offset) % 2**63, temperature=temperature, max_tokens=min(cap, left))
            if offset == 0:  # the title
                steering = Steering(banned=banned, ngram=NGRAM, boosts=_merged(nudges, boosts or {}))
            else:  # nor may it repeat itself: what earlier steps wrote is banned too
                written = {run for s in steps for run in _runs(s.ids)}
                steering = Steering(
                    banned=banned | written,
                    ngram=NGRAM,
                    no_repeats=True,
                    boosts=nudges,
                    soft_line_chars=soft_line,
                )
            done = model.complete(
                text,
                grammar,
                sampling,
                deadline=deadline,
                chat=prompt.chat,
                fixed_prefix=prompt.fixed,
                steering=steering,
            )
            steps.append(done)
            return done.text

        lines, limits = brief.lines_per_section, brief.kit.line_chars
        title_text = step(prompt.text, title_grammar(brief.language), 0, 32, self._theme_boosts(brief))
        title = _trimmed(clean_title(title_text, TITLE_CHARS[1]))
        body = ""
        if not title_only:
            tags = section_tags(brief.genre, brief.mood, seed, bridge=brief.bridge)
            plan = [
                (tags["Verse 1"], lines_grammar(brief.language, lines, limits), lines),
                (tags["Chorus"] + title, hook_grammar(brief.language, lines, limits, len(title)), lines),
                (tags["Verse 2"], lines_grammar(brief.language, lines, limits), lines),
            ]
            if "Bridge" in tags:
                plan.append((tags["Bridge"], lines_grammar(brief.language, 2, limits), 2))
            for offset, (lead, grammar, count) in enumerate(plan, start=1):
                if not _finished(steps):
                    break
                body += lead
                body += step(f"{prompt.text} {title}\n{body}", grammar, offset, 8 + 28 * count)
        return Draft(
            title=title,
            body=body,
            finish=next((s.finish for s in steps if s.finish != "stop"), "stop"),
            tokens=sum(s.tokens for s in steps),
            prompt_tokens=steps[0].prompt_tokens,
            evaluated=sum(s.evaluated for s in steps),
            prompt_seconds=sum(s.prompt_seconds for s in steps),
            seconds=sum(s.seconds for s in steps),
        )

    def prepare(self, language: str) -> float:
        """Evaluate the fixed part of `language`'s prompt now (`GGUFModel.prefill`);
        returns the seconds it took."""
        brief = SongBrief(theme="", genre="pop", mood="", language=language, duration=60)
        prompt = self._prompt(brief)
        return self.model.prefill(prompt.fixed, chat=prompt.chat)

    def _prompt(self, brief: SongBrief) -> Prompt:
        model = self.model
        if model.chat_template is not None:
            return chat_prompt(model.chat_template, brief, model.bos_token, model.eos_token)
        return few_shot_prompt(brief)

    def _english_penalties(self, language: str) -> dict[int, float]:
        """`ENGLISH_PENALTY` on the first token of common English words, unless
        the song is in English."""
        if language == "en":
            return {}
        return self._first_tokens(ENGLISH_WORDS, ENGLISH_PENALTY)

    def _example_penalties(self, brief: SongBrief) -> dict[int, float]:
        """`EXAMPLE_PENALTY` on the worked example's own words of four letters or
        more (in scripts without spaces: its tokens of two characters or more),
        but not on the theme's."""
        kit = brief.kit
        theme = brief.theme.lower()
        if kit.code in _CJK:
            theme_tokens = set(self.model.tokenize(brief.theme, bos=False))
            penalties: dict[int, float] = {}
            for line in (kit.example.title, *kit.example.lines):
                for token in self.model.tokenize(line, bos=False):
                    piece = self.model.token_text(token)
                    if len(piece.strip()) >= 2 and token not in theme_tokens:
                        penalties[token] = EXAMPLE_PENALTY
            return penalties
        text = " ".join((kit.example.title, *kit.example.lines))
        words = {w.lower() for w in re.findall(r"\w+", text) if len(w) >= 4}
        return self._first_tokens([w for w in words if w not in theme], EXAMPLE_PENALTY)

    def _first_tokens(self, words, value: float) -> dict[int, float]:
        """`value` for the first token of each word: as written, capitalised, after a space."""
        found: dict[int, float] = {}
        for word in words:
            for form in (word, word.capitalize(), f" {word}", f" {word.capitalize()}"):
                tokens = self.model.tokenize(form, bos=False)
                if tokens:
                    found[tokens[0]] = value
        return found

    def _banned_ngrams(self, kit: LanguageKit) -> frozenset[tuple[int, ...]]:
        """Every run of `EXAMPLE_NGRAM` tokens in the worked example's title and
        lines, as the model would write them (at a line's start or after a space).
        Runs inside one word are left out where words are spaced: banning
        `don`, `'`, `t` made the model write "don' t"."""
        if kit.code not in self._banned:
            spaced = kit.code not in _CJK
            runs: set[tuple[int, ...]] = set()
            newline = self.model.tokenize("\n", bos=False)
            for line in (kit.example.title, *kit.example.lines):
                for text in (line, f" {line}", f"\n{line}"):
                    tokens = self.model.tokenize(text, bos=False)
                    if text.startswith("\n") and tokens[: len(newline)] == newline:
                        tokens = tokens[len(newline) :]
                    runs.update(
                        run
                        for run in _runs(tokens, EXAMPLE_NGRAM)
                        if not spaced or " " in self.model.text_of(run).strip()
                    )
            self._banned[kit.code] = frozenset(runs)
        return self._banned[kit.code]

    def _theme_boosts(self, brief: SongBrief) -> dict[int, float]:
        """The first token of each of the theme's words (as written, capitalised,
        after a space): boosting a word's later pieces would start a title with
        a fragment ("ighthouse")."""
        if not brief.theme or not brief.theme_in_language:
            return {}
        if brief.language == "en":
            words = theme_words(brief.theme)
        elif brief.language in _CJK:
            words = {brief.theme}
        else:
            words = {w for w in re.findall(r"\w+", brief.theme.lower()) if len(w) >= 4}
        return self._first_tokens(words, THEME_BOOST)


def _trimmed(title: str) -> str:
    """The title without the short words it ended on ("Dreams Of A Toaster Of" ->
    "Dreams Of A Toaster"): the model ran out of room or words."""
    words = title.split(" ")
    while len(words) > 1 and words[-1].lower() in DANGLING:
        words.pop()
    return " ".join(words)


def _merged(*nudges: dict[int, float]) -> dict[int, float]:
    """Logit nudges added up."""
    total: dict[int, float] = {}
    for nudge in nudges:
        for token, value in nudge.items():
            total[token] = total.get(token, 0.0) + value
    return total


def _runs(tokens, n: int = NGRAM) -> set[tuple[int, ...]]:
    """Every run of `n` consecutive tokens."""
    tokens = list(tokens)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _typical_line(kit: LanguageKit) -> int:
    """The worked example's average line length, in characters."""
    lines = kit.example.lines
    return round(sum(len(line) for line in lines) / len(lines))


def _finished(steps: list[Completion]) -> bool:
    return steps[-1].finish == "stop"
