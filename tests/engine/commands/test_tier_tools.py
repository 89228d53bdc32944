"""The tier test and the boundary search (`python -m engine tiers --test / --boundary`),
on the CPU standing in for each tier's card, with the tiny model."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from engine.commands.tier_boundary import bisect_max, simulated_free_gb
from engine.commands.tier_run import (
    RunOptions,
    parse_capability,
    parse_tiers,
    run_tier_test,
    tier_policy,
)
from engine.commands.tiers import run_in_process
from engine.gpu.vram import FULL_SIZE, dit_stage_gb
from engine.settings import load_settings
from tests.support.engine_cli import run_engine


def test_tiers_are_named_as_the_guide_names_them() -> None:
    assert parse_tiers("1,4,6b") == ["tier1", "tier4", "tier6b"]
    assert parse_tiers("tier2 unlimited") == ["tier2", "unlimited"]
    assert len(parse_tiers(None)) == len(parse_tiers("all")) == 8
    with pytest.raises(ValueError, match="unknown tier '9': allowed are 1, 2, 3, 4, 5, 6a"):
        parse_tiers("9")
    assert parse_capability("6.1") == (6, 1)
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR"):
        parse_capability("pascal")


def test_bisection_finds_the_last_size_that_fits() -> None:
    probes: list[int] = []

    def fits(n: int) -> bool:
        probes.append(n)
        return n <= 437

    assert bisect_max(10, 600, fits) == 437
    assert len(probes) <= 11  # log2(590) + the first probe
    assert bisect_max(10, 600, lambda n: False) is None
    assert bisect_max(1, 8, lambda n: True) == 8


def test_the_simulated_budget_counts_what_each_placement_keeps_on_the_gpu(env_file: Path) -> None:
    # The 2B turbo's DiT: 2.9 GiB in bf16, half of it in INT8, 1/12 of it streamed.
    assert dit_stage_gb("dit-offload", None, "bfloat16", FULL_SIZE) == pytest.approx(2.94, abs=0.01)
    assert dit_stage_gb("dit-offload", "int8", "bfloat16", FULL_SIZE) == pytest.approx(1.47, abs=0.01)
    resident = dit_stage_gb("resident", None, "bfloat16", FULL_SIZE)
    assert resident == pytest.approx(5.49, abs=0.01)
    assert dit_stage_gb("streamed", "int8", "bfloat16", FULL_SIZE) < 0.15
    _, policy, _ = tier_policy(load_settings(), "tier4", RunOptions(with_llm=True))
    assert policy.songwriter_on_gpu
    free = simulated_free_gb(8, policy, "dit-offload", FULL_SIZE, songwriter_gb=0.25)
    assert free == pytest.approx(8 - 0.5 - 1.47 - 0.25, abs=0.01)


def test_a_tiers_whole_policy_runs_with_an_adapter_on_the_cpu(env_file: Path) -> None:
    options = RunOptions(skip_compile=True, steps=2)
    run = run_tier_test(load_settings(), "tier4", options)
    assert run.ok and run.seconds > 0 and run.peak_mb > 0
    used = run.settings
    assert used["tier"] == "tier4" and used["placement"] == "dit-offload"
    assert used["quantization"] == "int8" and not used["torch_compile"]
    assert used["adapter"] == "tier-test" and used["steps"] == 2


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_tier_whose_process_dies_is_reported_and_the_others_go_on() -> None:
    assert run_in_process(divmod, 7, 2) == (True, (3, 1))
    assert run_in_process(divmod, 7, 0) == (
        False,
        "ZeroDivisionError: integer division or modulo by zero",
    )
    assert run_in_process(_die) == (False, "the tier's process died (SIGKILL)")


def test_cli_boundary_prints_the_guides_numbers_beside_ours(env_file: Path) -> None:
    out = run_engine(["tiers", "--boundary", "--tiers", "1", "--steps", "1"], env_file, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert "the CPU stands in for each tier's card" in lines[0]
    assert "tiny random-weight" in lines[1]
    row = next(line for line in lines if line.startswith("tier1 "))
    assert row.split()[1:3] == ["6", "min"]  # the guide's 6 min without the LM
    assert "simulated" in out.stdout and "nothing measured" in row
    assert "No INT8 quantization  tier6b (20 GB)" in out.stdout
    assert "No CPU offload        tier6b (20 GB)" in out.stdout


def test_cli_refuses_unknown_tiers_with_one_line(env_file: Path) -> None:
    out = run_engine(["tiers", "--test", "--tiers", "7b"], env_file)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("unknown tier '7b': allowed are")
