"""Stand-ins for NVIDIA's tools, for tests that run setup or the doctor without a GPU:
shell scripts put first on PATH that answer as a real driver or toolkit would."""

from __future__ import annotations

from pathlib import Path

#: System folders only: this machine's CUDA 13 nvcc (in /usr/local) stays out of reach.
SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"

HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""


def write_tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def stub_nvidia_smi(folder: Path, driver: str, cuda: str, cards: list[tuple[str, str]]) -> None:
    """An `nvidia-smi` that prints the header for `driver`/`cuda` and lists `cards`
    as (name, compute capability) for the `--query-gpu` call setup makes."""
    listing = "".join(f"{name}, {cap}, {driver}\\n" for name, cap in cards)
    header = HEADER.format(driver=driver, cuda=cuda).replace("\n", "\\n")
    write_tool(
        folder,
        "nvidia-smi",
        f'case "$*" in\n  *--query-gpu*) printf "{listing}" ;;\n  *) printf "{header}" ;;\nesac\n',
    )
