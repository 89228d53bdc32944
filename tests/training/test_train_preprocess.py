"""Preprocessing: formats, sidecars and dataset JSON, what inference sees, tiling,
reruns that skip and re-encode, and broken files that never stop a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.support.train_helpers import (
    BROKEN,
    CLIP_SECONDS,
    copy_tree,
    fast_config,
    single_torch_thread,  # noqa: F401 (autouse)
)
from training.storage import Manifest, file_sha256
from training.tracks import find_tracks, parse_sidecar_text


def test_every_format_is_encoded_and_a_broken_file_is_reported(dataset) -> None:
    _, tensors = dataset
    manifest = Manifest.load(tensors)
    assert sorted(manifest.samples) == ["beat.mp3", "drone.ogg", "pad.flac", "synth.wav"]
    assert [p["key"] for p in manifest.problems] == [BROKEN]
    assert "cannot be read as audio" in manifest.problems[0]["reason"]
    frames = math.ceil(CLIP_SECONDS * 25)
    for entry in manifest.samples.values():
        assert entry["frames"] == frames
        stored = load_file(str(tensors / entry["file"]))
        assert stored["target_latents"].shape == (frames, 64)
        assert stored["context_latents"].shape == (frames, 128)
        assert stored["encoder_hidden_states"].shape[0] == stored["encoder_attention_mask"].shape[0]
        assert file_sha256(tensors / entry["file"]) == entry["sha256"]
    assert not list(tensors.glob("*.pass1.*")) and not list(tensors.glob(".*tmp"))


def test_captions_and_lyrics_come_from_sidecars(dataset) -> None:
    text = {k: v["text"] for k, v in Manifest.load(dataset[1]).samples.items()}
    assert text["synth.wav"] == {
        "caption": "bright synth arpeggio",
        "lyrics": "[verse]\nneon lights",
        "language": "en",
        "bpm": 128,
        "keyscale": "A minor",
        "timesignature": "4",
    }
    assert text["pad.flac"]["caption"] == "warm ambient pad"
    # Instrumentals are encoded as upstream and the engine encode them.
    assert (text["pad.flac"]["lyrics"], text["pad.flac"]["language"]) == (
        "[Instrumental]",
        "unknown",
    )
    assert text["beat.mp3"]["caption"] == "beat" and text["beat.mp3"]["lyrics"] == "[Instrumental]"


def test_stored_tensors_are_what_inference_feeds_the_dit(dataset, tiny_checkpoint_dir) -> None:
    """Run the pipeline itself with the track's prompt and catch what reaches the DiT."""
    from diffusers import AceStepPipeline

    manifest = Manifest.load(dataset[1])
    entry = manifest.samples["synth.wav"]
    stored = load_file(str(dataset[1] / entry["file"]))
    pipe = AceStepPipeline.from_pretrained(tiny_checkpoint_dir)
    seen = {}

    def catch(_module, _args, kwargs):
        seen.update(kwargs)

    handle = pipe.transformer.register_forward_pre_hook(catch, with_kwargs=True)
    text = entry["text"]
    pipe(
        prompt=text["caption"],
        lyrics=text["lyrics"],
        vocal_language=text["language"],
        audio_duration=entry["duration"],
        bpm=text["bpm"],
        keyscale=text["keyscale"],
        timesignature=text["timesignature"],
        num_inference_steps=1,
        output_type="latent",
    )
    handle.remove()
    torch.testing.assert_close(seen["encoder_hidden_states"][0], stored["encoder_hidden_states"])
    torch.testing.assert_close(seen["context_latents"][0], stored["context_latents"])


def test_rerun_skips_unchanged_reencodes_changed_and_drops_removed(
    dataset, tiny_checkpoint_dir, tmp_path: Path
) -> None:
    from training.preprocess import preprocess

    audio = copy_tree(dataset[0], tmp_path / "audio")
    tensors = copy_tree(dataset[1], tmp_path / "tensors")
    before = Manifest.load(tensors).samples
    (audio / "synth.txt").write_text("caption: darker synth\nbpm: 100\n")  # changed caption
    (audio / "drone.ogg").unlink()  # removed track
    damaged = tensors / before["beat.mp3"]["file"]
    damaged.write_bytes(damaged.read_bytes()[:-16])  # a damaged tensor file
    config = fast_config(tiny_checkpoint_dir, tmp_path, audio_dir=audio, tensor_output=tensors)
    result = preprocess(config.replace(preprocess=True))
    assert sorted(result.encoded) == ["beat.mp3", "synth.wav"]
    assert result.skipped == ["pad.flac"]
    assert [p.key for p in result.problems] == [BROKEN]
    after = Manifest.load(tensors).samples
    assert sorted(after) == ["beat.mp3", "pad.flac", "synth.wav"]
    assert not (tensors / before["drone.ogg"]["file"]).exists()
    assert after["pad.flac"] == before["pad.flac"]
    assert after["synth.wav"]["text"]["caption"] == "darker synth"
    assert after["synth.wav"]["sha256"] != before["synth.wav"]["sha256"]
    # Same inputs, same seed: the re-encoded damaged track is bit-identical to the original.
    assert after["beat.mp3"]["sha256"] == before["beat.mp3"]["sha256"]


def test_a_folder_of_only_broken_audio_is_reported_not_fatal(tiny_checkpoint_dir, tmp_path) -> None:
    from training.preprocess import preprocess

    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "a.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (audio / "b.flac").write_bytes(b"")
    config = fast_config(tiny_checkpoint_dir, tmp_path, audio_dir=audio, tensor_output=tmp_path / "t")
    result = preprocess(config.replace(preprocess=True))
    assert result.usable == 0
    assert sorted(p.key for p in result.problems) == ["a.wav", "b.flac"]
    assert Manifest.load(tmp_path / "t").samples == {}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_tiled_encoding_equals_encoding_whole(tmp_path: Path) -> None:
    """Windows with enough overlap reproduce the whole-track latents (a small
    VAE with a 16x hop keeps this fast; the algorithm does not depend on it)."""
    from diffusers import AutoencoderOobleck

    from training.encoding import encode_audio

    torch.manual_seed(0)
    vae = AutoencoderOobleck(
        encoder_hidden_size=16,
        downsampling_ratios=[4, 4],
        channel_multiples=[1, 1],
        decoder_channels=4,
        decoder_input_channels=8,
        audio_channels=2,
        sampling_rate=48000,
    ).eval()
    audio = torch.randn(2, 16 * 300 + 5) * 0.3
    whole = encode_audio(vae, audio, tile=1000, overlap=40, generator=seeded(3))
    tiled = encode_audio(vae, audio, tile=120, overlap=40, generator=seeded(3))
    assert whole.shape == tiled.shape == (301, 8)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-4)


def test_dataset_json_paths_tags_and_instrumentals(tmp_path: Path) -> None:
    (tmp_path / "songs").mkdir()
    for name in ("one.wav", "two.wav"):
        (tmp_path / "songs" / name).write_bytes(b"x")
    data = {
        "metadata": {"custom_tag": "myband", "tag_position": "prepend"},
        "samples": [
            {
                "audio_path": "songs/one.wav",
                "caption": "indie rock",
                "lyrics": "la la",
                "bpm": 140,
                "keyscale": "E minor",
                "timesignature": "3",
                "language": "fr",
            },
            {
                "audio_path": "songs/two.wav",
                "genre": "lofi",
                "is_instrumental": True,
                "lyrics": "ignored",
                "custom_tag": "tape",
            },
            {"audio_path": "songs/missing.wav", "caption": "x"},
            {"caption": "no path"},
        ],
    }
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(data))
    tracks, problems = find_tracks(None, path)
    one, two = tracks
    assert (one.caption, one.lyrics, one.bpm, one.keyscale, one.timesignature, one.language) == (
        "myband, indie rock",
        "la la",
        140,
        "E minor",
        "3",
        "fr",
    )
    assert (two.caption, two.lyrics, two.language) == ("tape, lofi", "[Instrumental]", "unknown")
    assert [p.key for p in problems] == ["songs/missing.wav", "samples[3]"]


def test_sidecar_text_forms() -> None:
    assert parse_sidecar_text("just some\nlyrics here") == {"lyrics": "just some\nlyrics here"}
    assert parse_sidecar_text("Caption: a\nKey: D major\nLyrics: first line\nsecond") == {
        "caption": "a",
        "keyscale": "D major",
        "lyrics": "first line\nsecond",
    }


def test_bad_dataset_json_is_a_clear_error(tmp_path: Path) -> None:
    from training.tracks import DatasetError

    path = tmp_path / "d.json"
    path.write_text('{"samples": 3}')
    with pytest.raises(DatasetError, match="expected"):
        find_tracks(None, path)
    path.write_text('{"metadata": {"tag_position": "middle"}, "samples": []}')
    with pytest.raises(DatasetError, match="prepend, append, replace"):
        find_tracks(None, path)
