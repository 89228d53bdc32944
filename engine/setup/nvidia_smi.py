"""What the NVIDIA driver says about this machine, read from `nvidia-smi`.

`nvidia-smi`'s header names the newest CUDA version the driver can run
("CUDA Version: 12.8"), and `--query-gpu=name,compute_cap,driver_version`
lists each card with its compute capability. Setup picks the torch build from
these (see `engine.setup.torch_builds`), before any Python package is installed, so
this module uses the standard library only; `python -m engine doctor` reads the
same facts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

QUERY = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")
#: Drivers before the R510 series cannot report `compute_cap`.
QUERY_WITHOUT_CAPABILITY = ("--query-gpu=name,driver_version", "--format=csv,noheader")
TIMEOUT_S = 30

_CUDA_VERSION = re.compile(r"CUDA Version:\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class Card:
    """One GPU as the driver lists it; `capability` is None when the driver is too
    old to say."""

    name: str
    capability: tuple[int, int] | None

    @property
    def sm(self) -> str:
        """`sm_120` for compute capability 12.0: how torch's arch list names it."""
        if self.capability is None:
            return "sm_?"
        return f"sm_{self.capability[0]}{self.capability[1]}"

    def describe(self) -> str:
        if self.capability is None:
            return f"{self.name} (compute capability unknown)"
        return f"{self.name} (compute capability {self.capability[0]}.{self.capability[1]})"


@dataclass(frozen=True)
class Driver:
    """The driver's version, the newest CUDA version it runs, and its cards."""

    version: str
    cuda: tuple[int, int]
    cards: tuple[Card, ...]

    def describe(self) -> str:
        cards = "; ".join(f"GPU {i}: {card.describe()}" for i, card in enumerate(self.cards))
        return f"{self.version}, runs CUDA up to {self.cuda[0]}.{self.cuda[1]}; {cards}"


@dataclass(frozen=True)
class DriverReading:
    """What reading the driver gave: a `Driver`, or why there is none. `problem`
    is None when there is simply no NVIDIA driver (no `nvidia-smi`)."""

    driver: Driver | None
    problem: str | None = None


def parse_cuda_version(header: str) -> tuple[int, int] | None:
    """(12, 8) from `nvidia-smi`'s "CUDA Version: 12.8"; None if it is not there."""
    match = _CUDA_VERSION.search(header)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_cards(csv: str) -> tuple[tuple[Card, ...], str | None]:
    """Cards and the driver version from `--query-gpu` CSV lines (with or without
    the `compute_cap` column)."""
    cards: list[Card] = []
    version: str | None = None
    for line in csv.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            name, cap, version = fields
            cards.append(Card(name, _capability(cap)))
        elif len(fields) == 2:
            name, version = fields
            cards.append(Card(name, None))
    return tuple(cards), version


def _capability(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _run(executable: str, *args: str) -> subprocess.CompletedProcess | str:
    try:
        return subprocess.run([executable, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{executable} could not run ({exc})"


def read_driver() -> DriverReading:
    """Ask `nvidia-smi` (found on PATH) about the driver and the cards."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return DriverReading(None)
    header = _run(executable)
    if isinstance(header, str):
        return DriverReading(None, header)
    if header.returncode != 0:
        said = (header.stdout + header.stderr).strip().splitlines()
        return DriverReading(None, f"nvidia-smi failed ({said[0] if said else f'exit {header.returncode}'})")
    cuda = parse_cuda_version(header.stdout)
    if cuda is None:
        return DriverReading(None, "nvidia-smi does not say which CUDA version the driver runs")
    listing = _run(executable, *QUERY)
    if isinstance(listing, str) or listing.returncode != 0:
        listing = _run(executable, *QUERY_WITHOUT_CAPABILITY)
    cards, version = parse_cards(listing.stdout) if not isinstance(listing, str) else ((), None)
    if not cards or version is None:
        return DriverReading(None, "nvidia-smi lists no GPU")
    return DriverReading(Driver(version, cuda, cards))
