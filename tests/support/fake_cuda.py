"""Stands in for torch.cuda on this GPU-less machine: one card with the given properties."""

from __future__ import annotations

from types import SimpleNamespace

import torch


class FakeCuda:
    """`torch.cuda` reports one card of `total_gib` GiB and compute capability
    `capability`; the memory caps the engine sets are recorded in `fractions`."""

    def __init__(
        self,
        monkeypatch,
        total_gib: float = 80.0,
        capability: tuple[int, int] = (9, 0),
        name: str = "Fake H100",
    ):
        self.fractions: list[tuple[float, int]] = []
        props = SimpleNamespace(
            name=name,
            total_memory=int(total_gib * 1024**3),
            major=capability[0],
            minor=capability[1],
        )
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
        monkeypatch.setattr(
            torch.cuda,
            "set_per_process_memory_fraction",
            lambda f, i=None: self.fractions.append((f, i)),
        )
