"""`python -m engine doctor` on this machine (no GPU), as a user runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.songwriter.gguf_files import ensure_bundled_model
from tests.support.engine_cli import run_engine
from tests.support.stub_tools import SYSTEM_PATH, stub_nvidia_smi

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason="these check what the doctor says on a machine without GPU"
)


def test_doctor_reports_a_cpu_only_machine(
    env_file: Path, tiny_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    models = tmp_path_factory.mktemp("models")
    ensure_bundled_model(models)
    env_file.write_text(f"CHECKPOINT_DIR={tiny_checkpoint_dir}\nMODELS_DIR={models}\n")
    result = run_engine(["doctor"], env_file, PATH=SYSTEM_PATH)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in lines] == [
        "! NVIDIA driver",
        "✔ torch",
        "✔ GPU memory",
        "✔ ffmpeg",
        "✔ libopus",
        "! checkpoint",
        "✔ songwriter",
    ]
    assert "none (nvidia-smi is not on PATH): songs are made on the CPU" in lines[0]
    assert f"✔ torch: {torch.__version__} (CPU build); no NVIDIA GPU here" in lines[1]
    assert "no GPU, so the CPU limits apply" in lines[2]
    assert "with the libopus encoder" in lines[3] and "libopus.so" in lines[4]
    assert "tiny random-weight test model" in lines[5] and "./setup.sh --models" in lines[5]
    assert lines[6] == "✔ songwriter: gemma-3-270m-q4_k_m.gguf loads (LLM_GPU_LAYERS=0)"


def test_doctor_says_what_to_do_about_each_problem(env_file: Path, tiny_checkpoint_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "incomplete"
    shutil.copytree(tiny_checkpoint_dir, checkpoint)
    (checkpoint / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    fake_model = tmp_path / "song.gguf"
    fake_model.write_text("not a model")
    env_file.write_text(f"CHECKPOINT_DIR={checkpoint}\nLLM_MODEL_NAME={fake_model}\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    stub_nvidia_smi(tools, "570.86.15", "12.8", [("NVIDIA GeForce RTX 5060", "12.0")])

    result = run_engine(["doctor"], env_file, PATH=f"{tools}:{SYSTEM_PATH}")
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines()}
    assert result.returncode == 1
    assert lines["✔ NVIDIA driver"].endswith(
        "570.86.15, runs CUDA up to 12.8; GPU 0: NVIDIA GeForce RTX 5060 (compute capability 12.0)"
    )
    assert f"✘ torch: torch {torch.__version__} is a CPU-only build" in lines["✘ torch"]
    assert "run ./setup.sh again" in lines["✘ torch"]
    assert "TORCH_CUDA=cu128 ./setup.sh" in lines["✘ torch"]
    assert "not measured: torch cannot use the GPU" in lines["! GPU memory"]
    assert "Missing vae weights" in lines["✘ checkpoint"]
    assert "./setup.sh --models" in lines["✘ checkpoint"]
    assert "is not a GGUF file" in lines["✘ songwriter"]
