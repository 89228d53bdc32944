"""A tiny byte-level BPE tokenizer built offline, for tests and the tiny checkpoint.

The real text encoder (Qwen3-Embedding-0.6B) ships a 151k-token Qwen tokenizer
that cannot be downloaded here. The pipeline only needs something with the same
interface: `tokenizer(texts, padding="longest", truncation=True, max_length=...,
return_tensors="pt")`, `<|endoftext|>` as a special token (the prompt templates
end with it) and a pad token. As in Qwen, `<|endoftext|>` doubles as the pad
token. Byte-level BPE encodes any text, so no input is ever unknown.

The merges are trained on a fixed built-in corpus, so the result is the same on
every run (checked by the tests).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
#: Size of the tiny tokenizer: 256 byte tokens, `<|endoftext|>`, and merges.
TINY_VOCAB_SIZE = 300

# Text shaped like what the pipeline feeds the tokenizer, so that the merges are
# the frequent pieces of the prompt and lyric templates.
_CORPUS = (
    "# Instruction\nFill the audio semantic mask based on the given conditions:\n\n"
    "# Caption\na calm lo-fi piano song for a rainy night in the city\n\n"
    "# Metas\n- bpm: 90\n- timesignature: 4\n- keyscale: C major\n- duration: 60 seconds\n",
    "# Languages\nen\n\n# Lyric\n[verse]\nthe rain is falling on the window\n"
    "[chorus]\nsing it with me, la la la\n[bridge]\nand the night goes on\n",
)


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer whose ids are all below `vocab_size` (>= 257)."""
    if vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size}: allowed is 257 or more (256 bytes + 1)")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(_CORPUS) * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=32768,
    )


def save_tiny_tokenizer(folder: Path, vocab_size: int = TINY_VOCAB_SIZE) -> Path:
    """Write the tiny tokenizer's files (`tokenizer.json`, `tokenizer_config.json`)
    into `folder`, e.g. next to a text encoder that lacks them."""
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_tokenizer(vocab_size).save_pretrained(folder)
    return folder
