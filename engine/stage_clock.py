"""Seconds per stage of one pipeline call, without touching the DiT."""

from __future__ import annotations

import time

import torch


class StageClock:
    """Splits the pipeline call into text encoding and DiT by noting when the
    condition encoder (the last text stage) finishes. The hook sits on the condition
    encoder, not on the DiT, so it never breaks a compiled DiT's graph."""

    def __init__(self, condition_encoder: torch.nn.Module, device: torch.device):
        self.device = device
        self.text_done: float | None = None
        self._handle = condition_encoder.register_forward_hook(self._mark)

    def _mark(self, _module, _args, _output) -> None:
        self.text_done = self.now()

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def close(self) -> None:
        self._handle.remove()
