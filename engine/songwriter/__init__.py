"""The songwriter: a GGUF language model (or the template fallback) writes each song's
SongSpec. See docs/songwriter.md."""
