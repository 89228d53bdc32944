"""`./setup.sh --dry-run` on a fresh copy of the project, with a stub `nvidia-smi`.

Each case writes a shell script named `nvidia-smi` that answers as a real
driver of that CUDA version with that card would, puts it first on a PATH
that holds only system folders (this machine's CUDA 13 `nvcc` lives in
/usr/local and must not be found by accident), and reads back the torch
builds setup would try, in order. The setup helper runs with `python -S`
(no site-packages), as it must run before the virtual environment exists.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import PROJECT_ROOT
from tests.support.stub_tools import HEADER, SYSTEM_PATH, stub_nvidia_smi, write_tool

#: What a fresh clone needs for the dry run.
SETUP_FILES = (
    "setup.sh",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-gpu.txt",
    ".env.example",
    "engine/__init__.py",
    "engine/setup/__init__.py",
    "engine/setup/nvidia_smi.py",
    "engine/setup/torch_builds.py",
    "engine/setup/helper.py",
)
_TORCH_INSTALL = re.compile(r"pip .*install (?:-q )?'?(torch[=<>][^ ']*)'?(?: --index-url \S+/whl/(\S+))?$")


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """(a fresh copy of the files setup needs, a folder for stub tools)."""
    project = tmp_path / "radio"
    for name in SETUP_FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, project / name)
    tools = tmp_path / "bin"
    tools.mkdir()
    write_tool(tools, "python3", f'exec "{sys.executable}" -S "$@"\n')
    return project, tools


def dry_run(project: Path, tools: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{tools}:{SYSTEM_PATH}"
    if not (tools / "nvcc").exists():
        assert shutil.which("nvcc", path=path) is None, "an nvcc outside the test is on PATH"
    return subprocess.run(
        ["bash", str(project / "setup.sh"), "--dry-run", "--no-system"],
        env={"PATH": path, "HOME": str(project), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def torch_installs(stdout: str) -> list[tuple[str, str | None]]:
    """(requirement, index tag or None for the default index) of each torch install
    the dry run prints, in order."""
    return [m.groups() for m in map(_TORCH_INSTALL.search, stdout.splitlines()) if m]


def torch_builds(stdout: str) -> list[str]:
    """The CUDA builds the dry run would install, in order; each pinned torch is
    that build's (`torch==X+cu128` from the cu128 index)."""
    tags = []
    for requirement, tag in torch_installs(stdout):
        if tag:
            assert requirement.endswith(f"+{tag}") or not requirement.startswith("torch=="), tag
            tags.append(tag)
    return tags


def held_to(stdout: str) -> str:
    return re.search(r"the rest of the stack is held to: (.*)", stdout).group(1)


CASES = {
    "no GPU": (None, [], "torch==2.13.0, torchao>=0.17"),
    "driver for CUDA 11.8, GTX 1080 Ti": (
        ("520.61.05", "11.8", [("NVIDIA GeForce GTX 1080 Ti", "6.1")]),
        ["cu118"],
        "torch==2.7.1+cu118, torchao==0.15.0",
    ),
    "driver for CUDA 12.2, RTX 3060": (
        ("535.104.05", "12.2", [("NVIDIA GeForce RTX 3060", "8.6")]),
        ["cu126", "cu128", "cu129"],
        "torch==2.13.0+cu126, torchao>=0.17",
    ),
    "driver for CUDA 12.8, RTX 4060": (
        ("570.86.15", "12.8", [("NVIDIA GeForce RTX 4060", "8.9")]),
        ["cu126", "cu128", "cu129"],
        "torch==2.13.0+cu126, torchao>=0.17",
    ),
    "driver for CUDA 12.8, RTX 5060": (
        ("570.86.15", "12.8", [("NVIDIA GeForce RTX 5060", "12.0")]),
        ["cu128", "cu129"],
        "torch==2.11.0+cu128, torchao>=0.17",
    ),
    "driver for CUDA 13.0, RTX 5060 Ti": (
        ("580.65.06", "13.0", [("NVIDIA GeForce RTX 5060 Ti", "12.0")]),
        ["cu130", "cu128", "cu129"],
        "torch==2.13.0+cu130, torchao>=0.17",
    ),
    "driver for CUDA 13.0, RTX 4060": (
        ("580.65.06", "13.0", [("NVIDIA GeForce RTX 4060", "8.9")]),
        ["cu130", "cu126", "cu128", "cu129"],
        "torch==2.13.0+cu130, torchao>=0.17",
    ),
    "driver for CUDA 13.0, GTX 1070 (Pascal)": (
        ("580.65.06", "13.0", [("NVIDIA GeForce GTX 1070", "6.1")]),
        ["cu126"],
        "torch==2.13.0+cu126, torchao>=0.17",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dry_run_tries_the_builds_this_driver_and_card_can_run(fresh, case: str) -> None:
    project, tools = fresh
    machine, expected, pins = CASES[case]
    if machine:
        stub_nvidia_smi(tools, *machine)
    result = dry_run(project, tools)
    assert result.returncode == 0, result.stderr
    assert torch_builds(result.stdout) == expected
    assert torch_installs(result.stdout)[-1] == ("torch==2.13.0", None)  # CPU: the last resort
    assert held_to(result.stdout) == pins
    assert "requirements.txt -r requirements-dev.txt" in result.stdout
    assert not (project / ".venv").exists() and not (project / ".env").exists()


def test_dry_run_says_why_builds_are_left_out(fresh) -> None:
    project, tools = fresh
    stub_nvidia_smi(tools, "570.86.15", "12.8", [("NVIDIA GeForce RTX 5060", "12.0")])
    out = dry_run(project, tools).stdout
    assert "cu130, needs a driver for CUDA 13 (this driver runs CUDA 12.8)" in out
    assert "cu126, has no kernels for sm_120 (NVIDIA GeForce RTX 5060)" in out
    assert "GPU 0: NVIDIA GeForce RTX 5060 (compute capability 12.0)" in out


def test_torch_cuda_overrides_the_choice_and_bad_values_are_refused(fresh) -> None:
    project, tools = fresh
    stub_nvidia_smi(tools, "570.86.15", "12.8", [("NVIDIA GeForce RTX 5060", "12.0")])
    result = dry_run(project, tools, TORCH_CUDA="cu126 cu132")
    assert torch_installs(result.stdout) == [
        ("torch==2.13.0+cu126", "cu126"),
        ("torch>=2.7.1,<=2.13.0", "cu132"),  # not in the table: the newest torch allowed
        ("torch==2.13.0", None),
    ]

    cpu = dry_run(project, tools, TORCH_CUDA="cpu")
    assert torch_installs(cpu.stdout) == [("torch==2.13.0", None)]

    bad = dry_run(project, tools, TORCH_CUDA="12.8")
    assert bad.returncode == 2
    assert "TORCH_CUDA='12.8': '12.8' is not a build tag" in bad.stderr
    assert "cu130 cu129 cu128 cu126 cu118" in bad.stderr


def test_a_failing_driver_is_reported_and_setup_goes_on_with_the_cpu_build(fresh) -> None:
    project, tools = fresh
    write_tool(
        tools,
        "nvidia-smi",
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."\nexit 9\n',
    )
    result = dry_run(project, tools)
    assert result.returncode == 0
    assert "nvidia-smi failed (NVIDIA-SMI has failed because it couldn't" in result.stderr
    assert torch_installs(result.stdout) == [("torch==2.13.0", None)]


def test_llama_cpp_is_built_with_cuda_only_for_torchs_cuda_major(fresh) -> None:
    project, tools = fresh
    stub_nvidia_smi(tools, "570.86.15", "12.8", [("NVIDIA GeForce RTX 4060", "8.9")])
    write_tool(tools, "nvcc", 'echo "Cuda compilation tools, release 12.8, V12.8.93"\n')
    same = dry_run(project, tools)
    assert "CMAKE_ARGS='-DGGML_CUDA=on -DGGML_NATIVE=OFF' FORCE_CMAKE=1" in same.stdout
    assert "--no-build-isolation -r requirements-gpu.txt" in same.stdout  # flash-attn: Ada

    write_tool(tools, "nvcc", 'echo "Cuda compilation tools, release 13.0, V13.0.88"\n')
    other = dry_run(project, tools)
    assert "GGML_CUDA" not in other.stdout and "requirements-gpu.txt" not in other.stdout
    assert "nvcc is CUDA 13.0 but torch uses CUDA 12.6" in other.stderr
    assert "building llama-cpp-python==0.3.36 for the CPU" in other.stdout


def test_help_lists_dry_run() -> None:
    out = subprocess.run(["bash", "setup.sh", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--dry-run" in out.stdout and "TORCH_CUDA" in out.stdout


def test_a_driver_too_old_to_report_compute_capability_still_gets_a_plan(fresh) -> None:
    project, tools = fresh
    header = HEADER.format(driver="470.256.02", cuda="11.4").replace("\n", "\\n")
    write_tool(
        tools,
        "nvidia-smi",
        'case "$*" in\n'
        "  *compute_cap*) echo 'Field \"compute_cap\" is not a valid field to query.'; exit 2 ;;\n"
        '  *--query-gpu*) echo "Tesla T4, 470.256.02" ;;\n'
        f'  *) printf "{header}" ;;\nesac\n',
    )
    result = dry_run(project, tools)
    assert "GPU 0: Tesla T4 (compute capability unknown)" in result.stdout
    assert torch_builds(result.stdout) == ["cu118"]  # checked on the GPU after installing


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the portable build is for x86-64")
def test_llama_cpp_for_the_cpu_is_a_portable_build_kept_in_our_own_cache(fresh) -> None:
    """A native build dies with SIGILL on a CPU that reports AMX inside a VM that does not
    enable it (this machine): the CPU build is portable, and cached per build options
    rather than in pip's cache, which would hand back a native wheel."""
    project, tools = fresh
    result = dry_run(project, tools)
    assert result.returncode == 0, result.stderr
    wheel = next(line for line in result.stdout.splitlines() if " wheel " in line)
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF" in wheel and "--no-cache-dir" in wheel
    assert f"-w {project}/.cache/ai-radio/wheels/llama-cpp-python-" in wheel
    assert "-DGGML-NATIVE-OFF" in wheel
