"""A loaded GGUF language model that writes grammar-constrained text.

Why not `Llama.create_completion(grammar=...)`: llama.cpp applies the grammar
to every token of the vocabulary before sampling, and Gemma's vocabulary has
262 144 tokens. On 2 idle CPU cores that made constrained decoding three to
six times slower than free decoding (12-28 against 78 tokens/s). Here sampling
is done the other way round ("sample, then check"): take the 64 most likely
tokens after the repeat penalty, let the grammar strike out the ones it
forbids, and sample among the rest; only when the grammar forbids all 64 is it
run over the whole vocabulary (a few times per answer, about 0.1 s each time).

The prompt is not evaluated from scratch each time. `fixed_prefix`, the part of
the prompt that is the same for every song in a language (heading and worked
example), is evaluated once and its state kept in memory, and so is the state
each call ends with (a song is written in a few steps, each continuing the
last): a request pays only for its own few dozen tokens. A call always starts
from such a saved state, never from whatever another caller left in the cache,
so a seeded answer is the same whoever else wrote in between.

`Steering` adds two nudges to the grammar: banned n-grams (the songwriter bans
every 4-token run of the worked example, so the model cannot copy its lines)
and logit boosts (the theme's words, while the title is written).

Sampling runs on a `numpy` generator seeded per call, so a fixed seed gives
the same text on the same machine and thread count. Calls are serialised by a
lock: one `GGUFModel` can be shared by threads (the worker writes song N+1
while the engine sings song N). llama.cpp cannot be interrupted inside a call,
so a deadline is checked between tokens and the number of tokens is bounded.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import Llama

from engine.errors import SongwriterError
from engine.songwriter.token_sampling import (
    LINE_BREAK_PULL,
    Sampling,
    Steering,
    penalise,
    sample,
    unbanned,
)

#: How many of the most likely tokens the grammar checks before it checks them all.
CANDIDATES = 64
#: Saved cache states kept in memory (about 4 MB each for Gemma 3 270M): the fixed
#: prompt prefixes, one per language the stations write in ...
PREFIX_STATES = 16
#: ... and, apart, so that they never push a prefix out, the ends of the last calls
#: (a song is written in steps, each continuing the last).
CONTINUATION_STATES = 4
#: A call continues a saved state when all but this many of its tokens match.
CONTINUATION_SLACK = 4
#: Tokens before the current one that the repeat penalty looks at.
PENALTY_WINDOW = 64
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class ModelLoadError(SongwriterError):
    """The GGUF file could not be loaded; the message says which file and why."""


class PromptTooLongError(SongwriterError, ValueError):
    """The prompt leaves too little room in the context window for an answer."""


@dataclass(frozen=True)
class Completion:
    """One generated answer. `finish` is "stop" (the grammar was complete and the
    model ended), "length" (max_tokens reached) or "timeout" (deadline passed).
    `prompt_tokens` is the prompt's length, `evaluated` how many of its tokens
    had to be evaluated (the rest came from the cache), in `prompt_seconds`."""

    text: str
    tokens: int
    finish: str
    seconds: float
    ids: tuple[int, ...] = ()
    prompt_tokens: int = 0
    evaluated: int = 0
    prompt_seconds: float = 0.0


def default_threads() -> int:
    """Threads for llama.cpp: one core left free on small machines, half the cores
    (about the physical ones) on large ones, at most 16.

    llama.cpp's threads busy-wait for each other, so they collapse when another
    busy thread shares their cores: on 2 cores next to another busy process,
    measured 26 ms per token with 1 thread and 180-640 ms with 2. The worker runs
    the music engine beside the songwriter, so a core is left for it.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores - 1 if cores <= 4 else cores // 2))


def common_prefix(a, b) -> int:
    """How many leading items two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class GGUFModel:
    """A GGUF file loaded with llama-cpp-python, shared safely between threads."""

    def __init__(self, path: Path, *, context_size: int, gpu_layers: int, threads: int):
        self.path = path
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._continuations: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._live: tuple[int, ...] | None = None  # the saved state the cache holds now
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=context_size,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=gpu_layers,
                # The cache is rolled back to a shared prefix between calls, which a
                # sliding-window cache that dropped old positions could not do.
                swa_full=True,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"cannot load {path}: {exc}") from exc
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_vocab = self._llm.n_vocab()
        self.context_size = self._llm.n_ctx()
        metadata = self._llm.metadata
        self.chat_template: str | None = metadata.get("tokenizer.chat_template")
        architecture = metadata.get("general.architecture", "")
        #: Transformer layers: what LLM_GPU_LAYERS counts (None if the file does not say).
        self.layers: int | None = int(metadata.get(f"{architecture}.block_count", 0)) or None
        self._eog = np.array([self._llm.token_eos()], dtype=np.int64)
        self._newline = self._llm.tokenize(b"\n", add_bos=False, special=False)[-1]
        self.bos_token = self._token_text(self._llm.token_bos())
        self.eos_token = self._token_text(self._llm.token_eos())

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", "replace")

    def token_text(self, token: int) -> str:
        """The text of one token (a piece of a word, often)."""
        return self.text_of((token,))

    def text_of(self, tokens: tuple[int, ...] | list[int]) -> str:
        """The text of a run of tokens."""
        return self._llm.detokenize(list(tokens)).decode("utf-8", "ignore")

    def count_tokens(self, prompt: str, *, chat: bool = False) -> int:
        return len(self.tokenize(prompt, chat=chat))

    def tokenize(self, text: str, *, chat: bool = False, bos: bool | None = None) -> list[int]:
        """Token ids of `text`. A rendered chat template carries its own BOS and
        special tokens; a plain prompt gets BOS and has no special tokens,
        whatever text is inside it. `bos=False` tokenizes a fragment."""
        add_bos = (not chat) if bos is None else bos
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=chat)

    def complete(
        self,
        prompt: str,
        grammar: str,
        sampling: Sampling,
        *,
        deadline: float,
        chat: bool = False,
        fixed_prefix: str = "",
        steering: Steering | None = None,
    ) -> Completion:
        """Continue `prompt` with text that `grammar` (GBNF) accepts.

        `fixed_prefix` is a leading part of `prompt` that is worth keeping
        evaluated for later calls. `deadline` is a `time.monotonic()` value;
        decoding stops there with `finish="timeout"`. Raises
        `PromptTooLongError` when the prompt leaves fewer than 32 tokens of the
        context window.
        """
        start = time.monotonic()
        tokens = self.tokenize(prompt, chat=chat)
        room = self.context_size - len(tokens)
        if room < 32:
            raise PromptTooLongError(
                f"the prompt has {len(tokens)} tokens and the context window "
                f"(LLM_CONTEXT_SIZE) {self.context_size}; raise LLM_CONTEXT_SIZE"
            )
        fixed = common_prefix(self.tokenize(fixed_prefix, chat=chat), tokens) if fixed_prefix else 0
        max_tokens = min(sampling.max_tokens, room)
        with self._lock:
            evaluated = self._evaluate(tokens, min(fixed, len(tokens) - 1))
            prompt_seconds = time.monotonic() - start
            output, finish = self._decode(tokens, grammar, sampling, max_tokens, deadline, steering)
            self._save(tuple(tokens + output), self._continuations, CONTINUATION_STATES)  # a next step goes on
            text = self._llm.detokenize(output).decode("utf-8", "replace")
        return Completion(
            text,
            len(output),
            finish,
            time.monotonic() - start,
            ids=tuple(output),
            prompt_tokens=len(tokens),
            evaluated=evaluated,
            prompt_seconds=prompt_seconds,
        )

    def _evaluate(self, tokens: list[int], fixed: int) -> int:
        """Bring the KV cache to `tokens`; returns how many tokens were evaluated.

        The cache starts from a saved state: the fixed prefix, or what a call
        this prompt continues ended with (all but its last few tokens match,
        which a retokenized boundary may change). So the same prompt is always
        evaluated in the same batches, whatever other callers did in between,
        and a seeded answer stays the same. The last token is evaluated on its
        own, for its logits.
        """
        llm = self._llm
        saved = (*self._prefixes, *self._continuations)
        eligible = [key for key in saved if common_prefix(key, tokens) >= len(key) - CONTINUATION_SLACK]
        key = max(eligible, key=len, default=None)
        if key is not None and len(key) >= fixed:
            if key != self._live:
                self._restore(key)
            reuse = min(common_prefix(key, tokens), len(tokens) - 1)
        else:
            reuse = 0
        llm.n_tokens = reuse
        evaluated = 0
        if reuse < fixed:
            llm.eval(tokens[reuse:fixed])
            evaluated += fixed - reuse
            self._save(tuple(tokens[:fixed]), self._prefixes, PREFIX_STATES)
            reuse = fixed
        if reuse < len(tokens) - 1:
            llm.eval(tokens[reuse:-1])
        llm.eval(tokens[-1:])
        self._live = None
        return evaluated + len(tokens) - reuse

    def prefill(self, prefix: str, *, chat: bool = False) -> float:
        """Evaluate a fixed prompt prefix now and keep its state, so that the first
        call that starts with it does not pay for it. Returns the seconds it took
        (0 when it was kept already)."""
        start = time.monotonic()
        tokens = self.tokenize(prefix, chat=chat)
        with self._lock:
            if tuple(tokens) in self._prefixes:
                return 0.0
            self._llm.n_tokens = 0
            self._llm.eval(tokens)
            self._save(tuple(tokens), self._prefixes, PREFIX_STATES)
        return time.monotonic() - start

    def _save(self, key: tuple[int, ...], states: OrderedDict[tuple[int, ...], bytes], limit: int) -> None:
        """Keep the cache's state (the prefix `key`) in `states` for later calls,
        at most `limit` of them. The raw llama.cpp state, not `Llama.save_state`,
        which also copies a vocabulary-sized score buffer per batch row (512 MB
        for Gemma)."""
        ctx = self._llm.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(ctx, buffer, size)
        states[key] = ctypes.string_at(buffer, written)  # slicing the buffer would build a list of ints
        self._live = key
        while len(states) > limit:
            states.popitem(last=False)

    def _restore(self, key: tuple[int, ...]) -> None:
        states = self._prefixes if key in self._prefixes else self._continuations
        data = states[key]
        states.move_to_end(key)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        llama_cpp.llama_state_set_data(self._llm.ctx, buffer, len(data))
        self._llm.input_ids[: len(key)] = key
        self._llm.n_tokens = len(key)
        self._live = key

    def _decode(
        self,
        prompt: list[int],
        grammar: str,
        sampling: Sampling,
        max_tokens: int,
        deadline: float,
        steering: Steering | None,
    ) -> tuple[list[int], str]:
        rng = np.random.default_rng(sampling.seed)
        checker = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not checker:
            raise ValueError("the grammar does not parse")
        buffer = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        output: list[int] = []
        written: set[tuple[int, ...]] = set()  # the answer's own n-grams (no_repeats)
        line_chars = 0  # characters since the last line break
        boost_ids = boost_values = None
        if steering is not None and steering.boosts:
            boost_ids = np.fromiter(steering.boosts.keys(), dtype=np.int64)
            boost_values = np.fromiter(steering.boosts.values(), dtype=np.float32)
        try:
            for _ in range(max_tokens):
                if time.monotonic() > deadline:
                    return output, "timeout"
                logits = self._last_logits()
                history = (prompt[-PENALTY_WINDOW:] + output)[-PENALTY_WINDOW:]
                penalise(logits, history, sampling.repeat_penalty)
                if boost_ids is not None:
                    logits[boost_ids] += boost_values
                if steering is not None and steering.soft_line_chars is not None:
                    over = line_chars - steering.soft_line_chars
                    if over > 0:
                        logits[self._newline] += LINE_BREAK_PULL * over
                allowed = self._allowed(checker, buffer, logits, sampling.top_k)
                if steering is not None and (steering.banned or steering.no_repeats):
                    allowed = unbanned(allowed, prompt + output, steering, written)
                token = sample(logits, allowed, sampling, rng)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    return output, "stop"
                llama_cpp.llama_sampler_accept(checker, token)
                output.append(token)
                if steering is not None and steering.no_repeats and len(output) >= steering.ngram:
                    written.add(tuple(output[-steering.ngram :]))
                piece = self._llm.detokenize([token]).decode("utf-8", "ignore")
                line_chars = len(piece.rsplit("\n", 1)[1]) if "\n" in piece else line_chars + len(piece)
                self._llm.eval([token])
            return output, "length"
        finally:
            llama_cpp.llama_sampler_free(checker)

    def _last_logits(self) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def _allowed(self, checker, buffer: np.ndarray, logits: np.ndarray, top_k: int) -> np.ndarray:
        """Token ids the grammar allows next, most likely first (at most `top_k`)."""
        best = np.argpartition(logits, -CANDIDATES)[-CANDIDATES:]
        # End of text is always checked: when the grammar is complete it is the
        # only token allowed, and need not be found in the whole vocabulary.
        best = np.union1d(best, self._eog)
        best = best[np.argsort(-logits[best])]
        allowed = best[self._grammar_mask(checker, buffer, best, logits)]
        if allowed.size == 0:
            everything = np.arange(self._n_vocab, dtype=np.int64)
            allowed = everything[self._grammar_mask(checker, buffer, everything, logits)]
            allowed = allowed[np.argsort(-logits[allowed])]
        return allowed[:top_k]

    def _grammar_mask(self, checker, buffer: np.ndarray, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        n = ids.size
        view = buffer[:n]
        view["id"] = ids
        view["logit"] = logits[ids]
        view["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=view.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=n,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(checker, ctypes.byref(array))
        return np.isfinite(view["logit"])
