"""Find the tracks to preprocess and what each one's prompt says.

Two sources, as users of upstream ACE-Step and Side-Step have them:

- a dataset JSON (upstream format): `{"metadata": {...}, "samples": [{"audio_path",
  "caption", "genre", "lyrics", "bpm", "keyscale", "timesignature", "language",
  "is_instrumental", "custom_tag", ...}]}`. `audio_path` is absolute, or relative
  to `--audio-dir` when given, else to the JSON's folder. `metadata` may set
  `custom_tag` with `tag_position` (prepend, append or replace) and
  `all_instrumental`.
- an audio folder (searched recursively), with optional sidecars next to each
  `song.mp3`: `song.caption.txt` and `song.lyrics.txt` (upstream), `song.json`
  (upstream per-track annotations), or `song.txt` holding `key: value` lines
  (`caption:`, `genre:`, `bpm:`, `key:`, `timesignature:`, `language:`; a
  `lyrics:` line starts the lyrics, which run to the end of the file) or, with
  no such lines, just the lyrics. Without a caption the file name is used.

No lyrics (or `[Instrumental]`, or `is_instrumental`) means an instrumental,
encoded as upstream ACE-Step and the station's engine encode one: lyrics
`[Instrumental]`, language `unknown`. Problems with one track are reported
(`TrackProblem`) and never stop the others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.spec import INSTRUMENTAL_LANGUAGE, INSTRUMENTAL_LYRICS, LANGUAGES, TIME_SIGNATURES
from training.audio_io import AUDIO_SUFFIXES
from training.encoding import TrackText

TAG_POSITIONS = ("prepend", "append", "replace")
INSTRUMENTAL_MARKERS = ("[instrumental]", "[inst]", "instrumental")
_SIDECAR_KEYS = {
    "caption": "caption",
    "prompt": "caption",
    "genre": "genre",
    "bpm": "bpm",
    "key": "keyscale",
    "keyscale": "keyscale",
    "timesignature": "timesignature",
    "time signature": "timesignature",
    "time_signature": "timesignature",
    "language": "language",
    "lyrics": "lyrics",
}
_KEY_LINE = re.compile(r"^\s*([A-Za-z _]+?)\s*:\s*(.*)$")


class DatasetError(ValueError):
    """The dataset JSON or audio folder cannot be used at all (the message says why)."""


@dataclass(frozen=True)
class TrackSource:
    """One audio file and its prompt. `key` is stable across runs: the file's
    path relative to the audio folder (or as written in the JSON)."""

    key: str
    path: Path
    caption: str
    lyrics: str = INSTRUMENTAL_LYRICS
    language: str = INSTRUMENTAL_LANGUAGE
    bpm: int | None = None
    keyscale: str | None = None
    timesignature: str | None = None

    def text(self, duration: float) -> TrackText:
        return TrackText(
            caption=self.caption,
            lyrics=self.lyrics,
            language=self.language,
            duration=duration,
            bpm=self.bpm,
            keyscale=self.keyscale,
            timesignature=self.timesignature,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "lyrics": self.lyrics,
            "language": self.language,
            "bpm": self.bpm,
            "keyscale": self.keyscale,
            "timesignature": self.timesignature,
        }


@dataclass(frozen=True)
class TrackProblem:
    key: str
    reason: str


def _clean_bpm(value: Any) -> int | None:
    try:
        bpm = round(float(value))
    except (TypeError, ValueError):
        return None
    return bpm if 20 <= bpm <= 300 else None


def _clean_time_signature(value: Any) -> str | None:
    text = str(value or "").strip()
    if text in TIME_SIGNATURES:
        return TIME_SIGNATURES[text]
    return text if text in TIME_SIGNATURES.values() else None


def _clean_language(value: Any) -> str:
    text = str(value or "").strip().lower()
    return text if text in LANGUAGES else "en"


def _clean_lyrics(value: Any, instrumental: bool) -> str:
    text = str(value or "").strip()
    if instrumental or not text or text.lower() in INSTRUMENTAL_MARKERS:
        return INSTRUMENTAL_LYRICS
    return text


def _caption(fields: dict[str, Any], fallback: str) -> str:
    caption = str(fields.get("caption") or "").strip()
    return caption or str(fields.get("genre") or "").strip() or fallback


def _with_tag(caption: str, tag: str, position: str) -> str:
    if not tag:
        return caption
    if position == "replace":
        return tag
    return f"{caption}, {tag}" if position == "append" else f"{tag}, {caption}"


def _name_caption(path: Path) -> str:
    return re.sub(r"[_\-.]+", " ", path.stem).strip() or "music"


def build_track(
    key: str,
    path: Path,
    fields: dict[str, Any],
    *,
    tag: str = "",
    tag_position: str = "prepend",
    all_instrumental: bool = False,
) -> TrackSource:
    instrumental = bool(fields.get("is_instrumental")) or all_instrumental
    lyrics = _clean_lyrics(fields.get("lyrics"), instrumental)
    return TrackSource(
        key=key,
        path=path,
        caption=_with_tag(_caption(fields, _name_caption(path)), tag, tag_position),
        lyrics=lyrics,
        language=INSTRUMENTAL_LANGUAGE if lyrics == INSTRUMENTAL_LYRICS else _clean_language(fields.get("language")),
        bpm=_clean_bpm(fields.get("bpm")),
        keyscale=str(fields.get("keyscale") or "").strip() or None,
        timesignature=_clean_time_signature(fields.get("timesignature")),
    )


def parse_sidecar_text(text: str) -> dict[str, Any]:
    """`key: value` lines (a `lyrics:` line starts the lyrics); otherwise all lyrics."""
    lines = text.splitlines()
    fields: dict[str, Any] = {}
    for index, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        name = _SIDECAR_KEYS.get(match.group(1).strip().lower()) if match else None
        if name == "lyrics":
            rest = [match.group(2)] if match.group(2).strip() else []
            fields["lyrics"] = "\n".join(rest + lines[index + 1 :]).strip()
            return fields
        if name is not None:
            fields[name] = match.group(2).strip()
        elif line.strip() and not fields:
            return {"lyrics": text.strip()}
    return fields


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def sidecar_fields(audio: Path) -> dict[str, Any]:
    """Metadata from the files next to `audio` (later sources win)."""
    fields: dict[str, Any] = {}
    stem = audio.with_suffix("")
    annotation = stem.with_suffix(".json")
    if annotation.is_file():
        try:
            data = json.loads(_read_text(annotation))
        except ValueError as exc:
            raise DatasetError(f"{annotation}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            fields.update(data)
    plain = stem.with_suffix(".txt")
    if plain.is_file():
        fields.update(parse_sidecar_text(_read_text(plain)))
    for suffix, name in ((".caption.txt", "caption"), (".lyrics.txt", "lyrics")):
        sidecar = Path(f"{stem}{suffix}")
        if sidecar.is_file():
            fields[name] = _read_text(sidecar).strip()
    return fields


def scan_audio_dir(audio_dir: Path) -> tuple[list[TrackSource], list[TrackProblem]]:
    if not audio_dir.is_dir():
        raise DatasetError(f"--audio-dir {audio_dir}: no such folder")
    tracks, problems = [], []
    files = sorted(p for p in audio_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    for path in files:
        key = path.relative_to(audio_dir).as_posix()
        try:
            tracks.append(build_track(key, path, sidecar_fields(path)))
        except DatasetError as exc:
            problems.append(TrackProblem(key, str(exc)))
    if not files:
        raise DatasetError(f"--audio-dir {audio_dir} holds no audio: allowed are {', '.join(AUDIO_SUFFIXES)}")
    return tracks, problems


def read_dataset_json(json_path: Path, audio_dir: Path | None) -> tuple[list[TrackSource], list[TrackProblem]]:
    try:
        data = json.loads(_read_text(json_path))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"--dataset-json {json_path}: cannot be read as JSON ({exc})") from None
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        raise DatasetError(f'--dataset-json {json_path}: expected {{"metadata": {{...}}, "samples": [...]}}')
    meta = data.get("metadata") or {}
    position = str(meta.get("tag_position") or "prepend").lower()
    if position not in TAG_POSITIONS:
        raise DatasetError(
            f"--dataset-json {json_path}: tag_position {position!r} is not allowed: use {', '.join(TAG_POSITIONS)}"
        )
    base = audio_dir if audio_dir is not None else json_path.parent
    tracks, problems, seen = [], [], set()
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or not sample.get("audio_path"):
            problems.append(TrackProblem(f"samples[{index}]", "has no audio_path"))
            continue
        written = str(sample["audio_path"])
        path = Path(written).expanduser()
        path = path if path.is_absolute() else base / path
        if written in seen:
            problems.append(TrackProblem(written, "is listed twice; the first entry is used"))
            continue
        seen.add(written)
        if not path.is_file():
            problems.append(TrackProblem(written, f"audio file {path} does not exist"))
            continue
        tag = str(sample.get("custom_tag") or meta.get("custom_tag") or "").strip()
        tracks.append(
            build_track(
                written,
                path,
                sample,
                tag=tag,
                tag_position=position,
                all_instrumental=bool(meta.get("all_instrumental")),
            )
        )
    return tracks, problems


def find_tracks(audio_dir: Path | None, dataset_json: Path | None) -> tuple[list[TrackSource], list[TrackProblem]]:
    """The tracks to preprocess, and the entries that cannot be used (with why)."""
    if dataset_json is not None:
        return read_dataset_json(dataset_json, audio_dir)
    if audio_dir is None:
        raise DatasetError("give --audio-dir (a folder of audio) or --dataset-json")
    return scan_audio_dir(audio_dir)
