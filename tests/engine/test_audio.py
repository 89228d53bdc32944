from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import audio
from engine.audio import AudioError, encode, loudness_gain_db, measure_loudness, probe


def _tone(seconds: float = 3.0, amplitude: float = 0.05, sr: int = 48_000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amplitude * np.sin(2 * np.pi * 440 * t), amplitude * np.sin(2 * np.pi * 550 * t)]).astype(
        np.float32
    )


@pytest.mark.parametrize(("suffix", "codec"), [("ogg", "opus"), ("flac", "flac"), ("mp3", "mp3"), ("wav", "pcm_s16le")])
def test_encode_each_format_with_tags_and_loudness(tmp_path: Path, suffix: str, codec: str) -> None:
    out = encode(
        _tone(),
        tmp_path / f"song.{suffix}",
        title="Rainy Night",
        artist="AI Radio",
        target_lufs=-16,
    )
    info = probe(out.path)
    assert info.codec == codec
    assert info.sample_rate == 48_000 and info.channels == 2
    assert info.duration == pytest.approx(3.0, abs=0.05)
    assert info.tags["title"] == "Rainy Night" and info.tags["artist"] == "AI Radio"
    assert out.measured_lufs == pytest.approx(measure_loudness(_tone()), abs=0.01)
    assert measure_loudness(_tone() * 10 ** (out.gain_db / 20)) == pytest.approx(-16, abs=0.3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_gain_is_capped_by_the_peak_and_silence_is_left_alone() -> None:
    # A loud, peaky signal cannot reach -5 LUFS without clipping: the gain stops at -1 dBFS.
    assert loudness_gain_db(-20.0, peak=0.5, target_lufs=-5.0) == pytest.approx(-1 - 20 * np.log10(0.5))
    assert loudness_gain_db(-70.0, peak=0.0, target_lufs=-14.0) == 0.0
    assert loudness_gain_db(-60.0, peak=0.001, target_lufs=-14.0) == audio.MAX_GAIN_DB
    silent = np.zeros((2, 48_000), dtype=np.float32)
    assert measure_loudness(silent) == audio.SILENCE_LUFS


def test_no_normalisation_keeps_samples(tmp_path: Path) -> None:
    import soundfile as sf

    tone = _tone(1.0)
    out = encode(tone, tmp_path / "raw.wav", target_lufs=None)
    assert out.gain_db == 0.0
    data, sr = sf.read(out.path, dtype="float32")
    assert sr == 48_000
    assert np.abs(data.T - tone).max() < 1e-3  # 16-bit quantisation only


def test_tags_are_one_line(tmp_path: Path) -> None:
    out = encode(_tone(0.5), tmp_path / "t.flac", title="a\nb\x00c", target_lufs=None)
    assert probe(out.path).tags["title"] == "a b c"


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (np.zeros((2, 100)), "x.aac", "unknown audio format"),
        (np.zeros((2, 2, 2)), "x.ogg", "shaped [channels, samples]"),
        (np.full((2, 100), np.nan), "x.ogg", "NaN"),
    ],
)
def test_bad_input_gives_clear_errors(tmp_path: Path, data, name, message) -> None:
    with pytest.raises(AudioError, match=re.escape(message)):
        encode(data, tmp_path / name)


def test_probe_rejects_a_non_audio_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.ogg"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="cannot read"):
        probe(bad)


def test_missing_ffmpeg_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg is not installed"):
        encode(_tone(0.5), tmp_path / "x.ogg")
