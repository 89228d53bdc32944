"""Side-Step's preprocessed datasets (.pt tensors + manifest.json) train here as they are.

`write_sidestep_dataset` writes what Side-Step's preprocessing writes (seeds/003:
"your preprocessed `.pt` tensor files and `manifest.json`"; its code, read
2026-11: one `torch.save`d dict per track and `{"metadata", "samples",
"num_samples"}`, plus `preprocess_meta.json` with the model variant and MD5
checksums in newer versions), with real conditions from the tiny model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch

from tests.support.train_helpers import fast_config, single_torch_thread  # noqa: F401 (autouse)
from training.loop import train
from training.sidestep import IMPORT_DIR, import_sidestep, is_sidestep_dataset
from training.storage import DatasetFormatError, Manifest

TRACKS = {
    "rain.pt": ("lo-fi piano, soft rain", "[verse]\nrain on the window", 90, 30),
    "funk.pt": ("upbeat funk, slap bass", "[Instrumental]", 118, 25),
}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def write_sidestep_dataset(checkpoint: Path, folder: Path, variant: str | None = "turbo") -> Path:
    """A Side-Step dataset folder for the tiny model; `variant=None` leaves out
    `preprocess_meta.json`, as Side-Step versions before it did."""
    from diffusers import AceStepPipeline

    from training.encoding import TrackText, context_latents, encode_conditions, encode_text

    pipe = AceStepPipeline.from_pretrained(checkpoint)
    cpu = torch.device("cpu")
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name, (caption, lyrics, bpm, frames) in TRACKS.items():
        text = encode_text(pipe, TrackText(caption, lyrics, "en", frames / 25, bpm=bpm), cpu)
        states, mask = encode_conditions(pipe, text, cpu)
        torch.save(
            {
                "target_latents": torch.randn(frames, 64, generator=generator),
                "attention_mask": torch.ones(frames),
                # Side-Step keeps the model's dtype (bf16 on a GPU) and a float mask.
                "encoder_hidden_states": states.to(torch.bfloat16),
                "encoder_attention_mask": mask.to(torch.bfloat16),
                "context_latents": context_latents(pipe, frames, cpu, torch.float32),
                "metadata": {
                    "audio_path": f"/data/audio/{name[:-3]}.wav",
                    "filename": f"{name[:-3]}.wav",
                    "caption": caption,
                    "lyrics": lyrics,
                    "duration": frames // 25,
                    "bpm": bpm,
                    "keyscale": "A minor",
                    "timesignature": "4",
                    "genre": "",
                    "is_instrumental": lyrics == "[Instrumental]",
                    "custom_tag": "",
                    "prompt_override": None,
                },
            },
            folder / name,
        )
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "metadata": {
                    "name": "my_lora",
                    "custom_tag": "",
                    "tag_position": "prepend",
                    "all_instrumental": False,
                    "genre_ratio": 0,
                },
                "samples": list(TRACKS),
                "num_samples": len(TRACKS),
            }
        )
    )
    if variant is not None:
        (folder / "preprocess_meta.json").write_text(
            json.dumps(
                {
                    "model_variant": variant,
                    "checksums": {name: _md5(folder / name) for name in TRACKS},
                }
            )
        )
    return folder


def test_a_side_step_dataset_is_imported_once_and_trains_one_epoch(
    tiny_checkpoint_dir: Path, tmp_path: Path, caplog
) -> None:
    data = write_sidestep_dataset(tiny_checkpoint_dir, tmp_path / "sidestep")
    assert is_sidestep_dataset(data)
    config = fast_config(tiny_checkpoint_dir, tmp_path, dataset_dir=data, output_dir=tmp_path / "out", epochs=1)
    with caplog.at_level(logging.WARNING):
        result = train(config, plain=True)
    assert result.epoch == 1 and result.step == 2  # two tracks, batch 1, no accumulation
    assert (result.adapter_dir / "pytorch_lora_weights.safetensors").is_file()
    assert "is a Side-Step dataset (.pt tensors): converted once" in caplog.text
    assert "condition encoder" not in caplog.text  # made with the turbo it trains

    imported = Manifest.load(data / IMPORT_DIR)
    assert sorted(imported.samples) == sorted(TRACKS)
    assert imported.model == "sidestep:turbo" and imported.latent_channels == 64
    rain = imported.samples["rain.pt"]
    assert rain["frames"] == 30 and rain["text"]["caption"] == "lo-fi piano, soft rain"
    assert imported.samples["funk.pt"]["text"]["lyrics"] == ""  # instrumental

    # Once: a second run finds the import current; a changed .pt is imported again.
    again = import_sidestep(data)
    assert sorted(again.unchanged) == sorted(TRACKS) and again.imported == []
    tensors = torch.load(data / "rain.pt", weights_only=True)
    tensors["target_latents"] = tensors["target_latents"] * 2
    torch.save(tensors, data / "rain.pt")
    meta = json.loads((data / "preprocess_meta.json").read_text())
    meta["checksums"]["rain.pt"] = _md5(data / "rain.pt")
    (data / "preprocess_meta.json").write_text(json.dumps(meta))
    assert import_sidestep(data).imported == ["rain.pt"]


class _NotTensors:
    """What a malicious .pt file could unpickle into: never loaded."""

    def __reduce__(self):
        return (print, ("this would run code",))


def test_unsafe_damaged_and_foreign_files_are_refused_by_name(tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    data = write_sidestep_dataset(tiny_checkpoint_dir, tmp_path / "sidestep")
    with open(data / "funk.pt", "wb") as handle:  # the checksum no longer matches
        pickle.dump({"target_latents": _NotTensors()}, handle)
    result = import_sidestep(data)
    assert result.imported == ["rain.pt"]
    assert [p.key for p in result.problems] == ["funk.pt"]
    assert "MD5 differs" in result.problems[0].reason

    (data / "preprocess_meta.json").unlink()  # an older Side-Step: no checksums to compare
    problems = import_sidestep(data).problems
    assert "not a Side-Step tensor file" in problems[0].reason  # weights_only refuses it

    tensors = torch.load(data / "rain.pt", weights_only=True)
    del tensors["context_latents"]
    torch.save(tensors, data / "rain.pt")
    with pytest.raises(DatasetFormatError, match="none of its tracks can be used") as error:
        import_sidestep(data)
    assert "rain.pt: lacks context_latents" in str(error.value)


def test_tensors_of_another_variant_or_model_size_are_caught(tiny_checkpoint_dir: Path, tmp_path: Path, caplog) -> None:
    data = write_sidestep_dataset(tiny_checkpoint_dir, tmp_path / "base", variant="base")
    config = fast_config(
        tiny_checkpoint_dir,
        tmp_path,
        dataset_dir=data,
        output_dir=tmp_path / "out",
        epochs=1,
        max_steps=1,
    )
    with caplog.at_level(logging.WARNING):
        train(config, plain=True)
    assert "preprocessed by Side-Step with the base model; this run trains turbo" in caplog.text

    wide = tmp_path / "wide"
    wide.mkdir()
    tensors = torch.load(data / "rain.pt", weights_only=True)
    tensors["encoder_hidden_states"] = torch.zeros(7, 2048)
    tensors["encoder_attention_mask"] = torch.ones(7)
    torch.save(tensors, wide / "song.pt")  # no manifest: every .pt of the folder
    with pytest.raises(DatasetFormatError, match="condition size 2048 and 64 latent channels"):
        train(config.replace(dataset_dir=wide, output_dir=tmp_path / "out2"), plain=True)
