"""The torch build choice, the check of an installed torch, and the stack pins.

No CUDA torch can be installed here (no GPU, and PyTorch's index cannot be
reached), so the loop's pip commands are recorded rather than run, and torch's
own answer (version, arch list, test kernel) is stubbed at the one place setup
asks for it, `probe`: everything that decides is the real code.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from engine.settings import PROJECT_ROOT
from engine.setup.helper import Runner, install_torch
from engine.setup.nvidia_smi import Card, Driver, parse_cards, parse_cuda_version
from engine.setup.torch_builds import (
    BUILDS,
    MIN_TORCH,
    TESTED_TORCH,
    OverrideError,
    TorchReport,
    judge,
    parse_override,
    plan_builds,
    probe_torch,
    runs_on,
    torchao_requirement,
    version_tuple,
)

RTX_5060 = Driver("570.86.15", (12, 8), (Card("NVIDIA GeForce RTX 5060", (12, 0)),))
#: The arch list of the cu124/cu126 builds: everything up to Hopper, no Blackwell.
UP_TO_HOPPER = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")
NO_KERNEL = "RuntimeError: CUDA error: no kernel image is available for execution on the device"


def test_nvidia_smi_output_is_read() -> None:
    header = "| NVIDIA-SMI 570.86.15    Driver Version: 570.86.15    CUDA Version: 12.8     |"
    assert parse_cuda_version(header) == (12, 8)
    assert parse_cuda_version("NVIDIA-SMI 470.256.02") is None
    listing = "NVIDIA GeForce RTX 5060, 12.0, 570.86.15\nTesla T4, 7.5, 570.86.15"
    cards, version = parse_cards(listing)
    assert version == "570.86.15"
    assert [(c.name, c.capability, c.sm) for c in cards] == [
        ("NVIDIA GeForce RTX 5060", (12, 0), "sm_120"),
        ("Tesla T4", (7, 5), "sm_75"),
    ]
    old, _ = parse_cards("Tesla K80, 470.256.02")  # drivers before R510 have no compute_cap
    assert old[0].capability is None and old[0].sm == "sm_?"


@pytest.mark.parametrize(
    ("arch_list", "capability", "runs"),
    [
        (UP_TO_HOPPER, (8, 9), True),  # an RTX 4060 runs sm_86 kernels
        (UP_TO_HOPPER, (6, 1), True),  # a GTX 1080 runs sm_60 kernels
        (UP_TO_HOPPER, (12, 0), False),  # the RTX 50 series: "no kernel image"
        (("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"), (12, 0), True),
        (("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"), (6, 1), False),
        (("sm_80", "sm_86"), (8, 0), True),
        (("sm_86",), (8, 0), False),  # a higher minor does not run on a lower one
        (("sm_90a",), (9, 0), True),
        (("sm_80a",), (8, 6), False),  # arch-specific kernels run on that exact arch only
        (("sm_75", "compute_90"), (12, 0), True),  # PTX is compiled for newer cards
        (("compute_90",), (8, 9), False),
    ],
)
def test_which_kernels_run_on_which_card(arch_list, capability, runs: bool) -> None:
    assert runs_on(arch_list, capability) is runs


class FakeEnvironment:
    """Stands in for pip and for what the installed torch says. pip "installs" a
    requirement by remembering it (those in `failing` cannot be downloaded); the
    probe answers as that torch would on an RTX 5060, with the arch list that
    `arch_lists` gives for its build tag (by default one with sm_120)."""

    def __init__(
        self,
        installed: str | None = None,
        *,
        failing: tuple[str, ...] = (),
        arch_lists: dict[str, tuple[str, ...]] | None = None,
        sees_gpu: bool = True,
    ):
        self.installed = installed
        self.failing = failing
        self.arch_lists = arch_lists or {}
        self.sees_gpu = sees_gpu
        self.commands: list[tuple[str, ...]] = []

    def runner(self) -> Runner:
        fake = self

        class FakePip(Runner):
            def pip(self, *args: str, env=None) -> bool:
                fake.commands.append(args)
                if any(requirement in args for requirement in fake.failing):
                    return False
                if "uninstall" in args:
                    fake.installed = None
                elif "install" in args:
                    fake.installed = next(a for a in args if a.startswith("torch=="))[7:]
                return True

        return FakePip(Path("python"), dry_run=False)

    def probe(self, _runner: Runner) -> TorchReport | None:
        if self.installed is None:
            return None
        tag = self.installed.partition("+")[2]
        if not tag.startswith("cu"):
            return TorchReport(self.installed)
        arch_list = self.arch_lists.get(tag, (*UP_TO_HOPPER, "sm_120"))
        kernel_error = None if runs_on(arch_list, (12, 0)) else NO_KERNEL
        devices = (("NVIDIA GeForce RTX 5060", (12, 0)),) if self.sees_gpu else ()
        cuda = f"{tag[2:-1]}.{tag[-1]}"
        return TorchReport(self.installed, cuda, self.sees_gpu, devices, arch_list, kernel_error)

    def install(self, plan=None) -> tuple[str, str | None] | None:
        plan = plan or plan_builds(RTX_5060)
        return install_torch(self.runner(), plan, RTX_5060, probe=self.probe)


def test_a_build_which_does_not_list_the_card_is_rejected_and_the_next_is_tried(capsys) -> None:
    plan = plan_builds(RTX_5060)
    assert [b.tag for b in plan.builds] == ["cu128", "cu129"]
    fake = FakeEnvironment(arch_lists={"cu128": UP_TO_HOPPER})  # cu128 installs, lacks sm_120

    assert fake.install(plan) == ("2.8.0+cu129", "12.9")
    assert fake.commands == [
        ("install", "torch==2.11.0+cu128", "--index-url", plan.builds[0].index_url),
        ("uninstall", "-q", "-y", "torch"),
        ("install", "torch==2.8.0+cu129", "--index-url", plan.builds[1].index_url),
    ]
    err = capsys.readouterr().err
    assert "cu128 rejected: torch 2.11.0+cu128 has kernels for sm_50" in err
    assert "but not for sm_120 (NVIDIA GeForce RTX 5060)" in err and NO_KERNEL in err


def test_an_installed_torch_is_kept_when_it_runs_on_the_card_and_replaced_when_not(
    capsys,
) -> None:
    fits = FakeEnvironment("2.11.0+cu128")
    assert fits.install() == ("2.11.0+cu128", "12.8") and fits.commands == []
    assert "torch 2.11.0+cu128 is installed and fits this machine; keeping it" in (capsys.readouterr().out)

    old = FakeEnvironment("2.13.0+cu126", arch_lists={"cu126": UP_TO_HOPPER})
    assert old.install() == ("2.11.0+cu128", "12.8")
    assert old.commands[0] == ("uninstall", "-q", "-y", "torch")
    assert "is installed, but torch 2.13.0+cu126 has kernels for" in capsys.readouterr().out


def test_when_no_build_fits_setup_says_what_was_tried_why_and_what_to_do(capsys) -> None:
    fake = FakeEnvironment(failing=("torch==2.11.0+cu128",), sees_gpu=False)

    assert fake.install() == (TESTED_TORCH, None)  # the CPU build, so the radio still runs
    assert fake.installed == TESTED_TORCH
    err = capsys.readouterr().err
    assert "cu128 (torch 2.11.0, CUDA 12.8): pip could not install it" in err
    assert "cu129 (torch 2.8.0, CUDA 12.9): torch 2.8.0+cu129 (CUDA 12.9) sees no GPU" in err
    assert "cu126 (not tried): has no kernels for sm_120" in err
    assert "connection to download.pytorch.org" in err and "nvidia-smi works" in err
    assert "update the NVIDIA driver (this one runs CUDA 12.8)" in err
    assert "Maxwell" not in err  # that advice is for cards older than compute capability 5.0
    assert "TORCH_CUDA='cu128 cu126' ./setup.sh" in err and "CPU build is installed" in err


def test_judge_names_what_is_wrong() -> None:
    devices = (("NVIDIA GeForce RTX 5060", (12, 0)),)
    assert "CPU-only build" in judge(TorchReport("2.13.0+cpu", None), RTX_5060)
    old_driver = Driver("535.104.05", (12, 2), RTX_5060.cards)
    assert judge(TorchReport("2.13.0+cu130", "13.0", False), old_driver).endswith(
        "sees no GPU: the driver runs CUDA 12.2 only"
    )
    fine = TorchReport("2.11.0+cu128", "12.8", True, devices, ("sm_90", "sm_120"))
    assert judge(fine, RTX_5060) is None
    broken = TorchReport("2.11.0+cu128", "12.8", True, devices, ("sm_120",), "RuntimeError: boom")
    assert judge(broken, RTX_5060) == "torch 2.11.0+cu128 cannot run on the GPU: RuntimeError: boom"


def test_the_probe_reports_this_machines_torch() -> None:
    report = probe_torch()
    assert report.version == torch.__version__ and report.import_error is None
    assert report.available is torch.cuda.is_available()
    assert TorchReport.from_dict(report.as_dict()) == report


def test_torch_cuda_is_checked() -> None:
    assert parse_override("") is None and parse_override("cpu") == ()
    assert [b.tag for b in parse_override("cu126, cu128")] == ["cu126", "cu128"]
    assert parse_override("cu132")[0].cuda == (13, 2)
    with pytest.raises(OverrideError, match="'cuda12' is not a build tag"):
        parse_override("cu128 cuda12")


def test_every_build_carries_a_torch_the_stack_runs_with() -> None:
    """diffusers and transformers ask for a minimum torch (transformers quietly
    ignores an older one); every pinned build and MIN_TORCH must meet it."""
    for package in ("diffusers", "transformers"):
        wanted = [
            Requirement(line).specifier
            for line in importlib.metadata.requires(package) or []
            if re.match(r"torch\s*[<>=]", line)
        ]
        assert wanted, f"{package} names no torch version"
        for build in BUILDS:
            assert all(spec.contains(build.torch) for spec in wanted), (package, build)
        assert all(spec.contains(MIN_TORCH) for spec in wanted)
    assert version_tuple(torch.__version__) == version_tuple(TESTED_TORCH)


@pytest.mark.parametrize(
    ("torch_version", "torchao"),
    [
        ("2.7.1+cu118", "torchao==0.15.0"),
        ("2.8.0+cu129", "torchao==0.16.0"),
        ("2.10.0", "torchao==0.16.0"),
        ("2.11.0+cu128", "torchao>=0.17"),
        ("2.13.0+cpu", "torchao>=0.17"),
    ],
)
def test_torchao_follows_torch(torch_version: str, torchao: str) -> None:
    assert torchao_requirement(torch_version) == torchao


def test_the_installed_torchao_matches_the_installed_torch() -> None:
    wanted = Requirement(torchao_requirement(torch.__version__)).specifier
    assert wanted.contains(importlib.metadata.version("torchao"))


def test_the_card_table_in_docs_setup_md_is_what_setup_does() -> None:
    """Each row of docs/setup.md's table of card generations, for each of its
    compute capabilities and each driver column, is the order `plan_builds` gives."""
    text = (PROJECT_ROOT / "docs" / "setup.md").read_text()
    row = r"^\| (\w+) \| ([\d., ]+) \| [^|]+ \|([^|]+)\|([^|]+)\|([^|]+)\|$"
    rows = re.findall(row, text, re.M)
    assert len(rows) == 9
    drivers = ((13, 0), (12, 8), (11, 8))
    for generation, capabilities, *cells in rows:
        for capability in capabilities.split(","):
            major, minor = (int(part) for part in capability.strip().split("."))
            for cuda, cell in zip(drivers, cells, strict=True):
                if "needs" in cell:
                    continue
                expected = re.findall(r"cu\d+", cell)
                driver = Driver("x", cuda, (Card(generation, (major, minor)),))
                assert [b.tag for b in plan_builds(driver).builds] == expected, (
                    generation,
                    capability,
                    cuda,
                )
