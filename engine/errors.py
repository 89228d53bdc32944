"""The engine's exceptions: one hierarchy, so callers dispatch on types, never on text.

Every error the engine raises on purpose is an `EngineError`; its message says what
went wrong and what to do. The worker files a failed song under a statistics category
by the error's type (`engine.worker.process`), so rewording a message never moves it
to another category.

    EngineError
    ├── SettingsError         a bad `.env` value (also a ValueError)
    ├── DeviceError           the device asked for cannot be used
    ├── CheckpointError       model files missing, damaged or of an unknown layout
    ├── DownloadError         model weights could not be fetched
    ├── GenerationError       a song could not be made (bad request, NaN latents, ...)
    │   └── OutOfMemoryError  the GPU ran out of memory, or the VRAM guard saw it coming
    ├── AdapterError          a LoRA/LoKR could not be loaded, switched or unloaded
    ├── AudioError            audio could not be encoded, probed or imported
    │   └── ImportRefused     a file from a person is not audio we accept (also a ValueError)
    ├── SongwriterError       the GGUF model cannot be used (file, load, prompt)
    └── WorkerError           the worker or the cluster cannot take or finish a job

Standard library only: `engine.setup` (run before the environment has packages) may
import it.
"""

from __future__ import annotations


class EngineError(RuntimeError):
    """Something the engine could not do; the message says why and what to do."""


class SettingsError(EngineError, ValueError):
    """Start-up configuration is wrong. `lines` holds one message per bad key."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


class DeviceError(EngineError):
    """The device asked for (`DEVICE`, `MAX_CUDA_VRAM`) cannot be used."""


class CheckpointError(EngineError):
    """Model files are missing, damaged or of an unknown layout."""


class DownloadError(EngineError):
    """Model weights could not be fetched."""


class GenerationError(EngineError):
    """A song could not be made; the message says why."""


class OutOfMemoryError(GenerationError):
    """The GPU ran out of memory, or the VRAM guard refused a song that would have."""


class AdapterError(EngineError):
    """An adapter could not be loaded, switched or unloaded."""


class AudioError(EngineError):
    """Audio could not be encoded, probed or converted."""


class ImportRefused(AudioError, ValueError):
    """A file from a person is refused; the message is fit to show them (no host paths)."""


class SongwriterError(EngineError):
    """The songwriter's model cannot be used."""


class WorkerError(EngineError):
    """Base of the song backends' errors (the local worker or the Ray cluster)."""
