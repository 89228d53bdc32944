"""A `MusicEngine` on the tiny random-weight pipeline, and one short song from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.checkpoint.tiny import build_tiny_pipeline
from engine.gpu.tiers import DeviceInfo, resolve
from engine.music_engine import MusicEngine
from engine.spec import SongSpec

SPEC = SongSpec(title="T", caption="synthwave", bpm=120, key="C major", duration=10, seed=5)
CPU = DeviceInfo("cpu", None, "CPU", None, None, None, False)


def make_engine(settings, **policy_changes) -> MusicEngine:
    """The engine with the CPU tier's policy, changed by `policy_changes`."""
    policy = dataclasses.replace(resolve(settings, CPU), **policy_changes)
    return MusicEngine(settings, policy=policy, pipeline=build_tiny_pipeline("turbo", seed=0))


def song(engine: MusicEngine, tmp_path: Path, name: str) -> np.ndarray:
    """`SPEC` sung into `tmp_path/name.wav`, as samples."""
    track = engine.generate(SPEC, out_path=tmp_path / f"{name}.wav", fmt="wav")[0]
    return sf.read(track.path, dtype="float32")[0]
