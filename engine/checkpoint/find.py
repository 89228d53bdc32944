"""Find an ACE-Step 1.5 checkpoint on disk, tell its layout and variant, and check
that every file it needs is there.

Two layouts are accepted (see docs/engine.md, "Weights and layouts"):

- diffusers: a folder with `model_index.json`, `transformer/`, `condition_encoder/`,
  `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/` (loads as it is);
- original: the ACE-Step app's `checkpoints/` folder with one or more DiT folders
  (`acestep-v15-turbo/`, `-base/`, `-sft/`, `-xl-*`), `vae/` and
  `Qwen3-Embedding-0.6B/` (converted once by `engine.checkpoint.convert`).

Nothing here imports torch: finding and checking a checkpoint is instant, so
start-up can fail early with a clear message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.errors import CheckpointError
from engine.settings import Settings

Layout = Literal["diffusers", "original"]
Variant = Literal["turbo", "base", "sft"]

DIT_PREFIX = "acestep-v15-"
VAE_FOLDER = "vae"
TEXT_ENCODER_FOLDER = "Qwen3-Embedding-0.6B"
DIFFUSERS_SUFFIX = "-diffusers"
DEFAULT_VARIANTS = ("turbo", "xl-turbo")

HOW_TO_GET = (
    "Get the weights with './setup.sh --models' or 'python -m engine download' "
    "(add '--variant base' or '--variant sft' for those), or point CHECKPOINT_DIR at a "
    "complete folder. To try every command without real weights, "
    "'python -m engine tiny-checkpoint DIR' writes a tiny model that makes noise."
)

#: Tokenizer files: either a fast tokenizer file, or the BPE vocabulary and merges.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
#: Weight file names accepted for diffusers models and transformers models.
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: Pipeline components that must be present; the audio tokenizer pair is optional.
REQUIRED_COMPONENTS = (
    "transformer",
    "condition_encoder",
    "vae",
    "text_encoder",
    "tokenizer",
    "scheduler",
)


@dataclass(frozen=True)
class CheckpointInfo:
    """What the engine needs to know about a checkpoint before loading it.

    `path` is the folder to load: the diffusers pipeline folder, or for the
    original layout the `checkpoints/` folder that holds `name/`, `vae/` and
    `Qwen3-Embedding-0.6B/`.
    """

    path: Path
    layout: Layout
    name: str
    variant: Variant
    is_xl: bool

    @property
    def is_turbo(self) -> bool:
        """Turbo is guidance-distilled: 8 steps, shift 3, no CFG. Base/SFT use CFG."""
        return self.variant == "turbo"

    @property
    def dit_dir(self) -> Path:
        """The folder holding the DiT weights and config."""
        return self.path / "transformer" if self.layout == "diffusers" else self.path / self.name

    def describe(self) -> str:
        size = "XL " if self.is_xl else ""
        return f"ACE-Step 1.5 {size}{self.variant} ({self.layout} layout, {self.path})"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON ({exc}). {HOW_TO_GET}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object. {HOW_TO_GET}")
    return data


def _missing(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"Missing {what}: {path}. {HOW_TO_GET}")


def _check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise _missing(path, what)


def _check_weights(folder: Path, names: tuple[str, ...], what: str) -> None:
    """One of `names` must exist, or its sharded form (`<name>.index.json` plus
    every shard the index lists)."""
    for name in names:
        if (folder / name).is_file():
            return
        index = folder / f"{name}.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise CheckpointError(f"{index} has no 'weight_map'. {HOW_TO_GET}")
            for shard in sorted(set(weight_map.values())):
                _check_file(folder / str(shard), f"{what} shard listed in {index.name}")
            return
    raise _missing(folder / names[0], what)


def has_tokenizer_files(folder: Path) -> bool:
    return any(all((folder / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS)


def _check_tokenizer(folder: Path, owner: str) -> None:
    if not has_tokenizer_files(folder):
        raise CheckpointError(
            f"The {owner} folder {folder} has no tokenizer files: it needs tokenizer.json "
            "(or vocab.json and merges.txt), plus tokenizer_config.json. They come with "
            f"Qwen3-Embedding-0.6B. {HOW_TO_GET}"
        )


def check_original(checkpoints: Path, name: str) -> None:
    """Raise `CheckpointError` naming the first file the original layout lacks."""
    dit = checkpoints / name
    if not dit.is_dir():
        raise _missing(dit, f"DiT folder '{name}'")
    _check_file(dit / "config.json", f"DiT config of '{name}'")
    _check_weights(dit, ("model.safetensors",), f"DiT weights of '{name}'")
    _check_file(dit / "silence_latent.pt", f"silence latent of '{name}'")
    vae = checkpoints / VAE_FOLDER
    _check_file(vae / "config.json", "VAE config")
    _check_weights(vae, DIFFUSERS_WEIGHTS, "VAE weights")
    text = checkpoints / TEXT_ENCODER_FOLDER
    _check_file(text / "config.json", "text encoder config")
    _check_weights(text, TRANSFORMERS_WEIGHTS, "text encoder weights")
    _check_tokenizer(text, "text encoder")


def check_diffusers(folder: Path) -> dict[str, Any]:
    """Raise `CheckpointError` naming the first file a diffusers pipeline folder
    lacks; return its `model_index.json`."""
    _check_file(folder / "model_index.json", "pipeline index")
    index = read_json(folder / "model_index.json")
    for component in REQUIRED_COMPONENTS:
        entry = index.get(component)
        if not isinstance(entry, list) or None in entry:
            raise CheckpointError(
                f"{folder / 'model_index.json'} does not list the '{component}' component, "
                f"which ACE-Step needs. {HOW_TO_GET}"
            )
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        sub = folder / component
        if component == "tokenizer":
            _check_tokenizer(sub, "tokenizer")
        elif component == "scheduler":
            _check_file(sub / "scheduler_config.json", "scheduler config")
        elif entry[0] == "transformers":
            _check_file(sub / "config.json", f"{component} config")
            _check_weights(sub, TRANSFORMERS_WEIGHTS, f"{component} weights")
        else:
            _check_file(sub / "config.json", f"{component} config")
            _check_weights(sub, DIFFUSERS_WEIGHTS, f"{component} weights")
    return index


def variant_of(dit_config: dict[str, Any], name: str) -> tuple[Variant, bool]:
    """(variant, xl) from a DiT config (original or diffusers) and its folder name."""
    text = f"{dit_config.get('model_version') or ''} {name}".lower()
    variant: Variant
    if dit_config.get("is_turbo") or "turbo" in text:
        variant = "turbo"
    elif "sft" in text:
        variant = "sft"
    else:
        variant = "base"
    hidden = dit_config.get("hidden_size", 0)
    xl = "xl" in text or (isinstance(hidden, int) and hidden > 2048)
    return variant, xl


def _diffusers_info(folder: Path) -> CheckpointInfo:
    check_diffusers(folder)
    variant, xl = variant_of(read_json(folder / "transformer" / "config.json"), folder.name)
    return CheckpointInfo(folder, "diffusers", folder.name, variant, xl)


def _original_info(checkpoints: Path, name: str) -> CheckpointInfo:
    check_original(checkpoints, name)
    variant, xl = variant_of(read_json(checkpoints / name / "config.json"), name)
    return CheckpointInfo(checkpoints, "original", name, variant, xl)


def variant_key(folder_name: str) -> str:
    """`acestep-v15-xl-turbo` and `acestep-v15-xl-turbo-diffusers` -> `xl-turbo`."""
    return folder_name.removeprefix(DIT_PREFIX).removesuffix(DIFFUSERS_SUFFIX)


def _candidates(folder: Path) -> dict[str, tuple[Layout, str]]:
    """Variant key -> (layout, subfolder name) for each model inside `folder`.
    A diffusers folder wins over an original one with the same key: it needs no
    conversion."""
    found: dict[str, tuple[Layout, str]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.startswith(DIT_PREFIX) and not (sub / "model_index.json").is_file():
            found.setdefault(variant_key(sub.name), ("original", sub.name))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (sub / "model_index.json").is_file():
            found[variant_key(sub.name)] = ("diffusers", sub.name)
    return found


def _is_dit_folder(path: Path) -> bool:
    """An original DiT folder (`checkpoints/acestep-v15-turbo`) given by itself."""
    config = path / "config.json"
    if not config.is_file() or not (path.parent / VAE_FOLDER).is_dir():
        return False
    return path.name.startswith(DIT_PREFIX) or read_json(config).get("model_type") == "acestep"


def inspect_checkpoint(path: Path, variant: str | None = None) -> CheckpointInfo:
    """Describe the checkpoint at `path`, checking that every needed file exists.

    `path` may be a diffusers pipeline folder, an original `checkpoints/` folder
    (with one or several variants), one DiT folder inside it, or a folder holding
    several diffusers pipelines. `variant` picks one (`turbo`, `base`, `sft`,
    `xl-turbo`, ... : the folder name without `acestep-v15-`); by default
    `turbo`, else `xl-turbo`, else the only one there.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CheckpointError(f"No checkpoint folder at {path}. {HOW_TO_GET}")
    if (path / "model_index.json").is_file():
        info = _diffusers_info(path)
        _check_requested(info, variant)
        return info
    if _is_dit_folder(path):
        info = _original_info(path.parent, path.name)
        _check_requested(info, variant)
        return info
    candidates = _candidates(path)
    if not candidates:
        raise CheckpointError(
            f"{path} holds no ACE-Step 1.5 model: expected model_index.json (diffusers "
            f"layout) or a '{DIT_PREFIX}turbo/' folder next to '{VAE_FOLDER}/' and "
            f"'{TEXT_ENCODER_FOLDER}/' (original layout). {HOW_TO_GET}"
        )
    key = _choose(candidates, variant, path)
    layout, name = candidates[key]
    if layout == "diffusers":
        return _diffusers_info(path / name)
    return _original_info(path, name)


def _choose(candidates: dict[str, tuple[Layout, str]], variant: str | None, path: Path) -> str:
    available = ", ".join(sorted(candidates))
    if variant is not None:
        if variant not in candidates:
            raise CheckpointError(
                f"No '{variant}' model in {path}: available are {available}. "
                f"Download it with 'python -m engine download --variant {variant}'."
            )
        return variant
    for key in DEFAULT_VARIANTS:
        if key in candidates:
            return key
    if len(candidates) == 1:
        return next(iter(candidates))
    raise CheckpointError(f"{path} holds several models ({available}) and no turbo: choose one.")


def _check_requested(info: CheckpointInfo, variant: str | None) -> None:
    if variant is None:
        return
    have = f"xl-{info.variant}" if info.is_xl else info.variant
    if variant not in (have, variant_key(info.name)):
        raise CheckpointError(f"{info.path} holds the '{have}' model, not '{variant}'.")


def find_checkpoint(settings: Settings, variant: str | None = None, path: Path | None = None) -> CheckpointInfo:
    """The checkpoint at `path`, by default `CHECKPOINT_DIR` (see `inspect_checkpoint`)."""
    folder = settings.checkpoint_dir if path is None else path
    try:
        return inspect_checkpoint(folder, variant)
    except CheckpointError as exc:
        where = "CHECKPOINT_DIR" if path is None else "checkpoint"
        raise CheckpointError(f"{where}={folder}: {exc}") from None
