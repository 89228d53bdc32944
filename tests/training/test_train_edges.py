"""The trainer's edges: a run that cannot start says so before anything is
written; one Ctrl-C is one "Stop requested", however many DataLoader workers
got it; `--dropout` is applied to LoKR (as LyCORIS's rank dropout), quietly."""

from __future__ import annotations

import logging
import os
import signal
import warnings
from pathlib import Path

import pytest

from engine.checkpoint.tiny import build_tiny_pipeline
from tests.support.train_helpers import single_torch_thread  # noqa: F401 (autouse)
from training.cli import parse, run_command
from training.config import ConfigError, TrainConfig
from training.stop import StopRequest
from training.storage import DatasetFormatError
from training.trainable_adapters import attach_adapter


def test_a_run_that_cannot_start_leaves_nothing_behind(
    dataset, tiny_checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    common = ["--plain", "--yes", "fixed", "--checkpoint-dir", str(tiny_checkpoint_dir), "--output-dir", str(out)]
    args, config = parse([*common, "--dataset-dir", str(dataset[1]), "--device", "cuda"])
    with pytest.raises(ConfigError, match="--device cuda: no such device here"):
        run_command(args, config)
    args, config = parse([*common, "--dataset-dir", str(dataset[0])])  # audio, not tensors
    with pytest.raises(DatasetFormatError, match=r"no manifest\.json: it is not a preprocessed"):
        run_command(args, config)
    assert not out.exists()  # no progress.jsonl, no train.log
    assert "Start training?" not in capsys.readouterr().out  # checked before the summary


def test_one_ctrl_c_is_one_stop_request_in_every_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stop = StopRequest(tmp_path / "STOP")
    try:
        child = os.fork()
        if child == 0:  # a DataLoader worker: forked with the handler installed
            os.kill(os.getpid(), signal.SIGINT)
            os._exit(0 if stop.reason is None else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # the worker left it to the trainer
        with caplog.at_level(logging.INFO, logger="training"):
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.reason == "Ctrl-C"
        assert sum("Stop requested" in r.getMessage() for r in caplog.records) == 1
    finally:
        stop.close()


def test_lokr_dropout_is_rank_dropout(caplog: pytest.LogCaptureFixture) -> None:
    pipe = build_tiny_pipeline()
    config = TrainConfig(adapter_type="lokr", lokr_linear_dim=4, lokr_factor=4, dropout=0.25)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        handle = attach_adapter(pipe.transformer, config)
    assert handle.network is not None and handle.network.loras
    assert {m.rank_dropout for m in handle.network.loras} == {0.25}
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in warned]
    assert not [line for line in said if "dropout" in line.lower()], said
