"""Which torch build fits this driver and card, and whether an installed one does.

PyTorch publishes one build of torch per CUDA version on its own index
(https://download.pytorch.org/whl/cu128, ...). Which ones fit a machine:

- The driver: `nvidia-smi` names the newest CUDA it runs. Within a major version
  builds are minor-version compatible (a cu128 build runs on any CUDA 12 driver),
  and newer drivers run older majors, but a cu130 build needs a CUDA 13 driver.
- The card: each build carries kernels for some compute capabilities only. A card
  runs kernels built for its own major version and an equal or lower minor
  (sm_86 kernels run on an sm_89 RTX 4060), or PTX it can compile. The RTX 50
  series (sm_120) needs a CUDA 12.8 build or newer; CUDA 12.8+ builds dropped
  Maxwell and Pascal (and since torch 2.11 Volta), which only cu126 still has.
- The torch version: the indexes stop at different releases (cu129 at 2.8, cu128
  at 2.11; cu126 and cu130 carry 2.13, the torch the project is tested with).

So builds are tried newest torch first and, for the same torch, newest CUDA
first; builds the driver cannot run or without kernels for the card are left
out. After installing, `probe_torch` asks torch itself (is CUDA available, is
the card in its arch list, does a tiny kernel run) and `judge` says why a build
does not fit, so the next one is tried. Standard library only (setup runs this
with the system Python, before torch exists); torch is imported in `probe_torch`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from engine.setup.nvidia_smi import Driver

INDEX_URL = "https://download.pytorch.org/whl/"
#: The torch every test runs with (the CPU build in CI).
TESTED_TORCH = "2.13.0"
#: The oldest torch this project runs with: diffusers 0.42.1 and transformers 5
#: need 2.6 or newer (transformers ignores an older torch), and cu118's last is 2.7.1.
MIN_TORCH = "2.7.1"
CPU_REQUIREMENT = f"torch=={TESTED_TORCH}"

_CUDA13 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120")
_LEGACY = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")


@dataclass(frozen=True)
class CudaBuild:
    """A torch build on PyTorch's index: its tag, CUDA version, the torch release
    it is pinned to (None: the newest in the supported range, for tags not in
    `BUILDS`), and the kernels PyTorch's release matrix lists for it."""

    tag: str
    cuda: tuple[int, int]
    torch: str | None
    kernels: tuple[str, ...] | None

    @property
    def requirement(self) -> str:
        if self.torch is None:
            return f"torch>={MIN_TORCH},<={TESTED_TORCH}"
        return f"torch=={self.torch}+{self.tag}"

    @property
    def index_url(self) -> str:
        return INDEX_URL + self.tag

    def describe(self) -> str:
        torch = f"torch {self.torch}" if self.torch else f"the newest torch up to {TESTED_TORCH}"
        return f"{self.tag} ({torch}, CUDA {self.cuda[0]}.{self.cuda[1]})"


#: The builds setup chooses from. Kernels as PyTorch's CUDA support matrix lists
#: them for that torch release (RELEASE.md and the per-release RFCs).
BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild("cu130", (13, 0), "2.13.0", _CUDA13),
    CudaBuild("cu129", (12, 9), "2.8.0", ("sm_70", *_CUDA13)),
    CudaBuild("cu128", (12, 8), "2.11.0", _CUDA13[:-1]),
    CudaBuild("cu126", (12, 6), "2.13.0", _LEGACY),
    CudaBuild("cu118", (11, 8), "2.7.1", _LEGACY),
)


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 11, 0) from "2.11.0+cu128"; the local part and pre-release tags are dropped."""
    release = version.split("+")[0]
    return tuple(int(part) for part in re.findall(r"\d+", release)[:3])


def _arch(name: str) -> tuple[str, int, int, str] | None:
    """("sm", 12, 0, "") from "sm_120", ("sm", 9, 0, "a") from "sm_90a"."""
    match = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", name)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)


def runs_on(arch_list: tuple[str, ...] | list[str], capability: tuple[int, int]) -> bool:
    """Whether a torch with these kernels runs on a card of `capability`: a kernel
    of the same major and an equal or lower minor (exactly equal for the
    arch-specific `sm_90a`), or PTX (`compute_XY`) at or below the capability."""
    for name in arch_list:
        parsed = _arch(name)
        if parsed is None:
            continue
        kind, major, minor, suffix = parsed
        if kind == "compute" and (major, minor) <= capability:
            return True
        same_major = kind == "sm" and major == capability[0]
        if same_major and (minor == capability[1] or (not suffix and minor < capability[1])):
            return True
    return False


@dataclass(frozen=True)
class Plan:
    """The CUDA builds to try, in order (none: the CPU build), and the ones left
    out with the reason."""

    builds: tuple[CudaBuild, ...]
    skipped: tuple[tuple[str, str], ...] = ()


class OverrideError(ValueError):
    """`TORCH_CUDA` holds something that is not a build tag."""


def parse_override(text: str) -> tuple[CudaBuild, ...] | None:
    """The builds `TORCH_CUDA` names, in its order; () for "cpu"; None when unset."""
    words = text.replace(",", " ").split()
    if not words:
        return None
    if words == ["cpu"]:
        return ()
    known = {build.tag: build for build in BUILDS}
    chosen = []
    for word in words:
        match = re.fullmatch(r"cu(\d{2,3})", word)
        if match is None:
            raise OverrideError(
                f"TORCH_CUDA='{text}': '{word}' is not a build tag. Use tags such as "
                f"{' '.join(known)} (any cuNNN on {INDEX_URL}), or 'cpu'."
            )
        digits = match.group(1)
        cuda = (int(digits[:-1]), int(digits[-1]))
        chosen.append(known.get(word, CudaBuild(word, cuda, None, None)))
    return tuple(chosen)


def _why_not(build: CudaBuild, driver: Driver) -> str | None:
    """Why `build` is left out on this driver and these cards, or None."""
    major, minor = driver.cuda
    if build.cuda[0] > major:
        return f"needs a driver for CUDA {build.cuda[0]} (this driver runs CUDA {major}.{minor})"
    if build.cuda[0] < 12 <= major:
        return "only for drivers older than CUDA 12: cu126 runs the same cards with a newer torch"
    for card in driver.cards:
        if card.capability and build.kernels and not runs_on(build.kernels, card.capability):
            return f"has no kernels for {card.sm} ({card.name})"
    return None


def plan_builds(driver: Driver | None, override: tuple[CudaBuild, ...] | None = None) -> Plan:
    """The CUDA builds to try on this machine, best first. `override` (from
    `TORCH_CUDA`) is tried as given; () or no driver means the CPU build."""
    if override is not None:
        return Plan(override)
    if driver is None:
        return Plan(())
    fitting, skipped = [], []
    for build in BUILDS:
        reason = _why_not(build, driver)
        if reason is None:
            fitting.append(build)
        else:
            skipped.append((build.tag, reason))
    fitting.sort(key=lambda b: (version_tuple(b.torch or TESTED_TORCH), b.cuda), reverse=True)
    return Plan(tuple(fitting), tuple(skipped))


@dataclass(frozen=True)
class TorchReport:
    """What an installed torch says about itself and the GPUs it sees."""

    version: str | None = None
    cuda: str | None = None
    available: bool = False
    devices: tuple[tuple[str, tuple[int, int]], ...] = ()
    arch_list: tuple[str, ...] = ()
    kernel_error: str | None = None
    import_error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TorchReport:
        devices = tuple((str(name), (int(cap[0]), int(cap[1]))) for name, cap in data["devices"])
        return cls(**{**data, "devices": devices, "arch_list": tuple(data["arch_list"])})


def probe_torch() -> TorchReport:
    """Ask the installed torch: its version and CUDA, the GPUs it sees, its arch
    list, and whether a tiny kernel (an elementwise op and a matmul) runs on each."""
    try:
        import torch
    except Exception as exc:  # a broken install can raise anything at import
        return TorchReport(import_error=f"{type(exc).__name__}: {exc}")
    version, cuda = str(torch.__version__), torch.version.cuda
    if cuda is None or not torch.cuda.is_available():
        return TorchReport(version, cuda)
    devices = tuple(
        (torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
        for i in range(torch.cuda.device_count())
    )
    kernel_error = None
    cpu = torch.arange(16.0).reshape(4, 4)
    expected = (cpu * 2 + 1) @ cpu
    try:
        for index in range(len(devices)):
            x = cpu.to(f"cuda:{index}")
            if not torch.allclose(((x * 2 + 1) @ x).cpu(), expected):
                kernel_error = f"a test kernel on cuda:{index} gave a wrong result"
    except Exception as exc:  # "no kernel image is available ..." is a RuntimeError
        kernel_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return TorchReport(version, cuda, True, devices, tuple(torch.cuda.get_arch_list()), kernel_error)


def judge(report: TorchReport, driver: Driver | None) -> str | None:
    """None when the installed torch runs on every GPU; else why it does not."""
    if report.import_error:
        return f"torch does not import ({report.import_error})"
    if report.cuda is None:
        return f"torch {report.version} is a CPU-only build"
    if not report.available:
        why = f"torch {report.version} (CUDA {report.cuda}) sees no GPU"
        if driver and version_tuple(report.cuda)[:1] > driver.cuda[:1]:
            why += f": the driver runs CUDA {driver.cuda[0]}.{driver.cuda[1]} only"
        return why
    for name, capability in report.devices:
        if not runs_on(report.arch_list, capability):
            why = (
                f"torch {report.version} has kernels for {', '.join(report.arch_list)} "
                f"but not for sm_{capability[0]}{capability[1]} ({name})"
            )
            kernel = report.kernel_error
            return why + (f"; the test kernel: {kernel}" if kernel else "")
    if report.kernel_error:
        return f"torch {report.version} cannot run on the GPU: {report.kernel_error}"
    if not report.devices:
        return f"torch {report.version} reports CUDA available but no device"
    return None


def supported_torch(version: str) -> bool:
    """Whether the project runs with this torch (from `MIN_TORCH` to `TESTED_TORCH`)."""
    return version_tuple(MIN_TORCH) <= version_tuple(version) <= version_tuple(TESTED_TORCH)


def torchao_requirement(torch_version: str) -> str:
    """The torchao release for a torch: torchao's compiled parts match one torch
    only (until 0.17, which is ABI-stable from torch 2.11 on), and peft applies
    LoRA to its INT8 layers from torchao 0.16. torch 2.7 gets 0.15.0, the last
    whose Python API (all the engine uses) supports it."""
    release = version_tuple(torch_version)
    if release < (2, 8):
        return "torchao==0.15.0"
    if release < (2, 11):
        return "torchao==0.16.0"
    return "torchao>=0.17"


def constraints(torch_version: str) -> list[str]:
    """pip constraints that keep the rest of the stack in step with this torch.
    diffusers stays at requirements.txt's pin: 0.42.1 runs with torch 2.6 and newer."""
    return [f"torch=={torch_version}", torchao_requirement(torch_version)]


@dataclass(frozen=True)
class StackChoice:
    """Whether to build llama-cpp-python with CUDA and install flash-attn, and why not."""

    llama_cuda: bool
    flash_attn: bool
    notes: list[str] = field(default_factory=list)


def choose_stack(
    driver: Driver | None,
    torch_cuda: str | None,
    nvcc: tuple[int, int] | None,
    *,
    llama_cuda: str = "",
    flash_attn: str = "",
    windows: bool = False,
) -> StackChoice:
    """The llama.cpp and flash-attn choices for a torch built for `torch_cuda` (None:
    the CPU build), with the toolkit `nvcc` (None: not found). `llama_cuda` and
    `flash_attn` are the LLAMA_CUDA / FLASH_ATTN variables (LLAMA_CUDA=1 builds with
    any nvcc found; =0, like FLASH_ATTN=0, skips). flash-attn has no Windows build
    that setup could rely on, so `windows` skips it."""
    notes: list[str] = []
    mismatch = None
    if nvcc and torch_cuda and version_tuple(torch_cuda)[0] != nvcc[0]:
        mismatch = (
            f"nvcc is CUDA {nvcc[0]}.{nvcc[1]} but torch uses CUDA {torch_cuda}: install the "
            f"CUDA {version_tuple(torch_cuda)[0]} toolkit and set CUDACXX to its nvcc"
        )
    elif nvcc and driver and nvcc > driver.cuda:
        mismatch = (
            f"nvcc is CUDA {nvcc[0]}.{nvcc[1]}, newer than the driver's CUDA "
            f"{driver.cuda[0]}.{driver.cuda[1]}: update the driver or use an older toolkit"
        )
    gpu_ready = driver is not None and torch_cuda is not None

    if llama_cuda == "0":
        build_llama = False
    elif llama_cuda == "1":
        build_llama = nvcc is not None
        if nvcc is None:
            notes.append("LLAMA_CUDA=1 but no nvcc was found: llama-cpp-python is for the CPU")
    else:
        build_llama = gpu_ready and nvcc is not None and mismatch is None
        if gpu_ready and nvcc is None:
            notes.append(
                "no CUDA toolkit (nvcc): the songwriter runs on the CPU; install the CUDA "
                f"{version_tuple(torch_cuda or '0')[0]} toolkit and run setup again to use the GPU"
            )
        elif gpu_ready and mismatch:
            notes.append(f"llama-cpp-python is built for the CPU: {mismatch}")

    ampere = driver is not None and all(
        card.capability is not None and card.capability >= (8, 0) for card in driver.cards
    )
    if flash_attn == "0":
        install_flash = False
    else:
        install_flash = gpu_ready and ampere and nvcc is not None and mismatch is None
        install_flash = install_flash and not windows
        if gpu_ready and not install_flash:
            why = "it needs an Ampere or newer GPU" if not ampere else None
            why = why or ("it needs nvcc" if nvcc is None else mismatch)
            why = why or "setup does not build it on Windows"
            notes.append(f"flash-attn is not installed ({why}); attention uses SDPA")
    return StackChoice(build_llama, install_flash, notes)
