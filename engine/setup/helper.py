"""The install steps `setup.sh` and `setup.bat` share: `python -m engine.setup.helper install`.

torch first, chosen for the driver and card (`engine.setup.torch_builds`) and
verified on the GPU after installing, the next build tried when it does not
fit; then llama-cpp-python (with CUDA when a toolkit of torch's CUDA major is
there), the requirements constrained to that torch, and flash-attn where it
fits. `--dry-run` prints every command and runs only read-only checks.

The setup scripts run this with the system Python, before the virtual
environment has anything: standard library only, and `engine/__init__.py`
must stay free of imports (tests/engine/setup/test_setup_choice.py runs it without
site-packages). `probe` runs inside the environment and imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.setup.nvidia_smi import Driver, read_driver
from engine.setup.torch_builds import (
    BUILDS,
    CPU_REQUIREMENT,
    MIN_TORCH,
    TESTED_TORCH,
    CudaBuild,
    OverrideError,
    Plan,
    TorchReport,
    choose_stack,
    constraints,
    judge,
    parse_override,
    plan_builds,
    probe_torch,
    supported_torch,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT_S = 600
#: llama.cpp's build options on x86-64: a portable AVX2 build instead of `-march=native`.
#: A native build on a CPU that reports AMX but runs in a VM that does not enable AMX
#: state dies with SIGILL ("Illegal instruction") at its first decode; this was seen on
#: this project's own machines. The songwriter's model is small enough that AVX-512 and
#: AMX gain little.
LLAMA_PORTABLE = "-DGGML_NATIVE=OFF" if platform.machine().lower() in ("x86_64", "amd64") else ""
#: Written into the environment after a build, so that a later run can tell whether the
#: installed llama-cpp-python was built with today's options.
LLAMA_MARK = "llama-cpp-build.txt"


def say(text: str) -> None:
    print(f"[setup] {text}", flush=True)


def warn(text: str) -> None:
    print(f"[setup] WARNING: {text}", file=sys.stderr, flush=True)


class Runner:
    """Runs install commands in the project folder, printing each first; with
    `dry_run` it only prints them. `check` runs read-only commands either way."""

    def __init__(self, python: Path, dry_run: bool):
        self.python = python
        self.dry_run = dry_run

    def pip(self, *args: str, env: Mapping[str, str] | None = None) -> bool:
        command = [str(self.python), "-m", "pip", "--disable-pip-version-check", *args]
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        say(f"$ {shown + ' ' if shown else ''}{_shell_words(command)}")
        if self.dry_run:
            return True
        full_env = {**os.environ, **env} if env else None
        return subprocess.run(command, cwd=PROJECT_ROOT, env=full_env).returncode == 0

    def check(self, code: str) -> bool:
        """Whether `code` runs cleanly in the environment (False without one)."""
        if not self.python.exists():
            return False
        result = subprocess.run([str(self.python), "-c", code], cwd=PROJECT_ROOT, capture_output=True)
        return result.returncode == 0


def _shell_words(command: list[str]) -> str:
    """The command as the user's shell would take it."""
    return subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)


def probe_environment(runner: Runner) -> TorchReport | None:
    """What the environment's torch says (`probe_torch` run there); None when there
    is no environment or no torch in it."""
    if not runner.python.exists():
        return None
    try:
        result = subprocess.run(
            [str(runner.python), "-m", "engine.setup.helper", "probe"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return TorchReport(import_error=f"the check did not finish in {PROBE_TIMEOUT_S} s")
    lines = result.stdout.strip().splitlines()
    try:
        report = TorchReport.from_dict(json.loads(lines[-1]))
    except (IndexError, ValueError, KeyError, TypeError):
        said = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return TorchReport(import_error=f"the check crashed ({said})")
    if report.import_error and "No module named 'torch'" in report.import_error:
        return None
    return report


Probe = Callable[[Runner], "TorchReport | None"]


def _replace_reason(installed: TorchReport, plan: Plan, driver: Driver | None, override: bool) -> str | None:
    """Why the installed torch must make way for the plan; None to keep it."""
    version = installed.version or "?"
    if installed.import_error:
        return f"it does not import ({installed.import_error})"
    if not supported_torch(version):
        return f"this project needs torch {MIN_TORCH} to {TESTED_TORCH}"
    if override:
        wanted = {build.tag for build in plan.builds} or {"cpu"}
        tag = version.partition("+")[2] or ("cpu" if installed.cuda is None else "?")
        if tag not in wanted:
            return f"TORCH_CUDA asks for {' '.join(sorted(wanted))}"
    if not plan.builds:
        return None  # no GPU, or the CPU asked for: any torch runs on the CPU
    return judge(installed, driver)


def failure_advice(failures: list[tuple[CudaBuild, str]], plan: Plan, driver: Driver | None) -> list[str]:
    """What the user can do when no CUDA build fits, from why each one failed."""
    why = " ".join(reason for _build, reason in failures) + " ".join(r for _t, r in plan.skipped)
    advice = []
    if "pip could not install" in why:
        advice.append(
            "check the connection to download.pytorch.org (behind a proxy set HTTPS_PROXY) "
            f"and that this Python ({sys.version.split()[0]}) is one torch has wheels for"
        )
    if "sees no GPU" in why:
        advice.append(
            "make sure nvidia-smi works and the GPU is visible (reboot after installing a "
            "driver; in WSL or a container, pass the GPU through)"
        )
    capabilities = [card.capability for card in driver.cards if card.capability] if driver else []
    if any(capability < (5, 0) for capability in capabilities):
        advice.append(
            "cards older than Maxwell (compute capability 5.0) have no current torch build: "
            "run on the CPU (./setup.sh --cpu)"
        )
    elif driver and driver.cuda < (13, 0) and ("kernels" in why or "driver" in why):
        advice.append(
            f"update the NVIDIA driver (this one runs CUDA {driver.cuda[0]}.{driver.cuda[1]}): "
            "with a CUDA 13 driver setup also tries cu130"
        )
    tags = " ".join(build.tag for build in BUILDS)
    advice.append(
        f"name the builds to try yourself: TORCH_CUDA='cu128 cu126' ./setup.sh (tags: {tags}); "
        "'python -m engine doctor' checks the result"
    )
    return advice


def install_torch(
    runner: Runner,
    plan: Plan,
    driver: Driver | None,
    *,
    override: bool = False,
    probe: Probe = probe_environment,
) -> tuple[str, str | None] | None:
    """Install the first build of the plan that runs on the GPU, else the CPU build.
    Returns (torch version, its CUDA version or None), or None when even the CPU
    build could not be installed."""
    if plan.builds:
        say("torch builds to try, in order: " + ", ".join(b.describe() for b in plan.builds))
    for tag, why in plan.skipped:
        say(f"  left out: {tag}, {why}")
    installed = probe(runner)
    if installed is not None:
        reason = _replace_reason(installed, plan, driver, override)
        if reason is None:
            say(f"torch {installed.version} is installed and fits this machine; keeping it")
            return installed.version or TESTED_TORCH, installed.cuda
        say(f"torch {installed.version} is installed, but {reason}: replacing it")
        runner.pip("uninstall", "-q", "-y", "torch")

    failures: list[tuple[CudaBuild, str]] = []
    for build in plan.builds:
        if runner.dry_run and build is not plan.builds[0]:
            say(f"(if the build before is rejected:) installing {build.describe()}")
        else:
            say(f"installing {build.describe()}: a few GB to download")
        if not runner.pip("install", build.requirement, "--index-url", build.index_url):
            failures.append((build, "pip could not install it (its message is above)"))
            continue
        if runner.dry_run:
            say(f"$ {runner.python} -m engine.setup.helper probe   (the check on the GPU)")
            continue
        report = probe(runner) or TorchReport(import_error="torch is not installed")
        reason = judge(report, driver)
        if reason is None:
            cards = ", ".join(name for name, _cap in report.devices)
            say(f"torch {report.version} runs on {cards}")
            return report.version or TESTED_TORCH, report.cuda
        warn(f"{build.tag} rejected: {reason}")
        failures.append((build, reason))
        runner.pip("uninstall", "-q", "-y", "torch")

    if runner.dry_run and plan.builds:
        first = plan.builds[0]
        say("(if every CUDA build is rejected:) installing the CPU build")
        runner.pip("install", "-q", CPU_REQUIREMENT)
        return f"{first.torch or TESTED_TORCH}+{first.tag}", f"{first.cuda[0]}.{first.cuda[1]}"
    if plan.builds or plan.skipped:
        lines = ["no CUDA build of torch runs on this machine. Tried:"]
        lines += [f"  - {build.describe()}: {reason}" for build, reason in failures]
        lines += [f"  - {tag} (not tried): {reason}" for tag, reason in plan.skipped]
        lines.append("What you can do:")
        lines += [f"  - {line}" for line in failure_advice(failures, plan, driver)]
        lines.append("Meanwhile the CPU build is installed: the radio runs, slowly.")
        warn("\n".join(lines))
    say(f"installing {CPU_REQUIREMENT} (the CPU build)")
    if not runner.pip("install", "-q", CPU_REQUIREMENT):
        warn(f"{CPU_REQUIREMENT} could not be installed; see pip's message above")
        return None
    return TESTED_TORCH, None


def read_nvcc(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """The CUDA version of the toolkit's nvcc (`CUDACXX`, else on PATH)."""
    executable = environ.get("CUDACXX") or shutil.which("nvcc")
    if not executable:
        return None
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def install_stack(
    runner: Runner,
    driver: Driver | None,
    torch: tuple[str, str | None],
    environ: Mapping[str, str],
) -> bool:
    """llama-cpp-python, the requirements and flash-attn, in step with `torch`."""
    version, cuda = torch
    pins = constraints(version)
    say(f"the rest of the stack is held to: {', '.join(pins)}")
    nvcc = read_nvcc(environ)
    if nvcc:
        say(f"CUDA toolkit: nvcc {nvcc[0]}.{nvcc[1]}")
    choice = choose_stack(
        driver,
        cuda,
        nvcc,
        llama_cuda=environ.get("LLAMA_CUDA", ""),
        flash_attn=environ.get("FLASH_ATTN", ""),
        windows=sys.platform == "win32",
    )
    for note in choice.notes:
        warn(note)
    requirements = (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    llama = next(line for line in requirements if line.startswith("llama-cpp-python=="))
    with tempfile.TemporaryDirectory() as folder:
        pinned = Path(folder) / "constraints.txt"
        pinned.write_text("\n".join(pins) + "\n")
        if not install_llama(runner, llama, cuda=choice.llama_cuda, environ=environ):
            return False
        say(f"installing requirements (torch stays at {version})")
        files = ("-r", "requirements.txt", "-r", "requirements-dev.txt")
        if not runner.pip("install", "-q", "-c", str(pinned), *files):
            return False
        if choice.flash_attn and not runner.check("import flash_attn"):
            say("installing flash-attn (compiles when no prebuilt wheel fits this torch)")
            gpu_files = ("--no-build-isolation", "-r", "requirements-gpu.txt")
            if not runner.pip("install", "-q", "-c", str(pinned), *gpu_files):
                warn("flash-attn did not install; attention uses SDPA")
    return True


def _llama_wheel_dir(llama: str, cmake_args: str, environ: Mapping[str, str]) -> Path:
    """Our own cache of the CPU build, one folder per version and build options: pip's
    wheel cache is keyed by the source alone, so it would hand back a build made with
    other options (a native one) to every fresh checkout."""
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    options = re.sub(r"[^A-Za-z0-9]+", "-", cmake_args).strip("-") or "default"
    return cache / "ai-radio" / "wheels" / f"{llama.replace('==', '-')}-{options}"


def install_llama(runner: Runner, llama: str, *, cuda: bool, environ: Mapping[str, str]) -> bool:
    """llama-cpp-python with CUDA when `cuda`, else for the CPU; an installed build made
    with other options (or by an older setup) is replaced."""
    cmake_args = " ".join(filter(None, ("-DGGML_CUDA=on" if cuda else "", LLAMA_PORTABLE)))
    mark = runner.python.parent.parent / LLAMA_MARK
    wanted = f"{llama} {cmake_args}".strip()
    current = mark.read_text().strip() if mark.is_file() else ""
    if current == wanted and runner.check("import llama_cpp"):
        return True
    if cuda:
        say(f"building {llama} with CUDA: this takes several minutes")
        env = {"CMAKE_ARGS": cmake_args, "FORCE_CMAKE": "1"}
        flags = ("--no-cache-dir", "--force-reinstall", "--no-deps")
        if runner.pip("install", "-q", *flags, llama, env=env):
            return _mark_llama(runner, mark, wanted)
        warn("the CUDA build of llama-cpp-python failed; the songwriter runs on the CPU")
        return install_llama(runner, llama, cuda=False, environ=environ)
    wheels = _llama_wheel_dir(llama, cmake_args, environ)
    built = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not built:
        say(f"building {llama} for the CPU (several minutes the first time; kept in {wheels})")
        env = {"CMAKE_ARGS": cmake_args} if cmake_args else None
        if not runner.pip("wheel", "-q", "--no-deps", "--no-cache-dir", "-w", str(wheels), llama, env=env):
            return False
        built = sorted(wheels.glob("*.whl")) if wheels.is_dir() else [wheels / "llama_cpp_python.whl"]
    # Its dependencies come with requirements.txt, which names llama-cpp-python too.
    if not runner.pip("install", "-q", "--force-reinstall", "--no-deps", str(built[-1])):
        return False
    return _mark_llama(runner, mark, wanted)


def _mark_llama(runner: Runner, mark: Path, wanted: str) -> bool:
    if not runner.dry_run:
        mark.write_text(wanted + "\n")
    return True


def install(python: Path, *, cpu: bool, dry_run: bool, environ: Mapping[str, str]) -> int:
    """torch, then the rest of the stack; the exit status for the setup script."""
    runner = Runner(python, dry_run)
    try:
        override = parse_override(environ.get("TORCH_CUDA", ""))
    except OverrideError as exc:
        warn(str(exc))
        return 2
    reading = read_driver()
    if reading.driver:
        say(f"NVIDIA driver {reading.driver.describe()}")
    elif reading.problem:
        warn(f"{reading.problem}: torch is chosen as for a machine without an NVIDIA GPU")
    else:
        say("no NVIDIA GPU (nvidia-smi is not on PATH)")
    plan = Plan(()) if cpu else plan_builds(reading.driver, override)
    torch = install_torch(runner, plan, reading.driver, override=override is not None and not cpu)
    if torch is None:
        return 1
    return 0 if install_stack(runner, reading.driver, torch, environ) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.setup.helper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("install", help="install torch and the stack into an environment")
    run.add_argument("--python", type=Path, required=True, help="the environment's python")
    run.add_argument("--cpu", action="store_true", help="the CPU build of torch, even with a GPU")
    run.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    commands.add_parser("probe", help="print what this Python's torch says, as JSON")
    args = parser.parse_args(argv)
    if args.command == "probe":
        print(json.dumps(probe_torch().as_dict()))
        return 0
    return install(args.python, cpu=args.cpu, dry_run=args.dry_run, environ=os.environ)


if __name__ == "__main__":
    sys.exit(main())
