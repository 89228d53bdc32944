"""TensorBoard scalars and histograms, the plain log file, and the loss-curve PNG.

TensorBoard tags (under `--log-dir`, default `{output-dir}/runs`):
`loss/train` and `lr` every `--log-every` steps; `grad_norm/total` and
`grad_norm/layers.N` (per transformer layer, before clipping) and the
`timesteps` histogram every `--log-heavy-every` steps; `loss/val` after each
validation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Metrics:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        if values.numel():
            self.writer.add_histogram(tag, values.float(), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def grad_norms(named: list[tuple[str, torch.nn.Parameter]], group) -> dict[str, float]:
    """L2 norm of the gradients per group (`group(name)` names it) and in total."""
    squares: dict[str, float] = {}
    for name, parameter in named:
        if parameter.grad is not None:
            key = group(name)
            squares[key] = squares.get(key, 0.0) + float(parameter.grad.float().pow(2).sum())
    norms = {key: value**0.5 for key, value in sorted(squares.items())}
    norms["total"] = sum(squares.values()) ** 0.5
    return norms


@contextlib.contextmanager
def log_file(path: Path) -> Iterator[None]:
    """Append this run's log to `path`: the trainer's own messages at debug level
    (with tracebacks), other libraries' warnings and errors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    ours = logging.getLogger("training")
    level = ours.level
    ours.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        ours.setLevel(level)
        handler.close()


def loss_curve_png(history: list[list[float]], validation: list[list[float]], *, title: str | None = None) -> bytes:
    """Training loss (raw and smoothed) and validation loss against steps, as PNG bytes.

    Uses a `Figure` of its own, not pyplot's global state, so threads (the bot
    draws in one) cannot mix up their plots."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if history:
        steps, losses = zip(*history, strict=True)
        axes.plot(steps, losses, alpha=0.35, label="train loss")
        window = max(1, len(losses) // 20)
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        axes.plot(steps, smooth, label=f"train loss (mean of {window})")
    if validation:
        steps, losses = zip(*validation, strict=True)
        axes.plot(steps, losses, "o-", label="validation loss")
    if title:
        axes.set_title(title)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if history or validation:
        axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_loss_curve(history: list[list[float]], validation: list[list[float]], path: Path) -> Path:
    """`loss_curve_png` written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(loss_curve_png(history, validation))
    return path
