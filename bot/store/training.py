"""Training runs in SQLite: the queue of `/radio_train` and the runs before it.

A run is `queued` until the trainer takes it, `running` while it has the
trainer, then `done`, `stopped`, `failed` or `cancelled` (taken out of the
queue before it ran). The bot keeps its progress here (step, epoch, loss, the
adapter it was exported as, the last words about it), so `/radio_train_status`
still knows the last runs after a restart, and a run still queued when the
bot stopped waits on in the same order. Which server a run belongs to is
`guild_id`: the queue module (bot.training.queue) shows a server its own runs.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal

from bot.store.checks import check_id, check_int
from bot.store.core import StoreCore
from bot.store.errors import InvalidValueError, NotFoundError

RunKind = Literal["train", "preprocess"]
ENDED = ("done", "stopped", "failed", "cancelled")
WAITING = ("queued", "running")
MAX_MESSAGE_CHARS = 600
#: What `update_training_run` may change.
PROGRESS_FIELDS = ("state", "step", "total_steps", "epoch", "loss", "adapter", "message", "started_at", "ended_at")


@dataclass(frozen=True)
class TrainingRunRow:
    id: int
    guild_id: int
    channel_id: int | None
    user_id: int
    kind: RunKind
    dataset: str
    name: str
    preset: str | None
    epochs: int
    preview_every: int
    state: str
    step: int
    total_steps: int | None
    epoch: int
    loss: float | None
    adapter: str | None
    message: str
    created_at: float
    started_at: float | None
    ended_at: float | None

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def _row(row: sqlite3.Row) -> TrainingRunRow:
    return TrainingRunRow(**dict(row))


class TrainingRunStore(StoreCore):
    """The `training_runs` table."""

    def add_training_run(
        self,
        guild_id: int,
        *,
        channel_id: int | None,
        user_id: int,
        kind: RunKind,
        dataset: str,
        name: str,
        preset: str | None = None,
        epochs: int = 0,
        preview_every: int = 0,
    ) -> TrainingRunRow:
        """A new run at the end of the queue."""
        check_id("guild_id", guild_id)
        check_id("user_id", user_id)
        if kind not in ("train", "preprocess"):
            raise InvalidValueError("kind", kind, "train or preprocess")
        check_int("epochs", epochs, 0, 1_000_000)
        check_int("preview_every", preview_every, 0, 1_000_000)
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "INSERT INTO training_runs (guild_id, channel_id, user_id, kind, dataset, name,"
                " preset, epochs, preview_every, state, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                (guild_id, channel_id, user_id, kind, dataset, name, preset, epochs, preview_every, self._now()),
            )
            return self._training_run(db, cursor.lastrowid)

    @staticmethod
    def _training_run(db: sqlite3.Connection, run_id: int | None) -> TrainingRunRow:
        row = db.execute("SELECT * FROM training_runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no training run #{run_id}")
        return _row(row)

    def training_run(self, run_id: int) -> TrainingRunRow:
        with self._transaction(write=False) as db:
            return self._training_run(db, run_id)

    def update_training_run(self, run_id: int, **changes: Any) -> TrainingRunRow:
        """Change a run's state and progress (`PROGRESS_FIELDS`)."""
        unknown = set(changes) - set(PROGRESS_FIELDS)
        if unknown:
            raise InvalidValueError("field", sorted(unknown)[0], ", ".join(PROGRESS_FIELDS))
        if "message" in changes:
            changes["message"] = str(changes["message"])[:MAX_MESSAGE_CHARS]
        if "state" in changes and changes["state"] not in (*WAITING, *ENDED):
            raise InvalidValueError("state", changes["state"], ", ".join((*WAITING, *ENDED)))
        with self._transaction(write=True) as db:
            if changes:
                assignments = ", ".join(f"{key} = ?" for key in changes)
                db.execute(
                    f"UPDATE training_runs SET {assignments} WHERE id = ?",
                    (*changes.values(), run_id),
                )
            return self._training_run(db, run_id)

    def waiting_training_runs(self) -> list[TrainingRunRow]:
        """Runs running or queued, for all servers, in the order they run."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT * FROM training_runs WHERE state IN ('queued', 'running')"
                " ORDER BY CASE state WHEN 'running' THEN 0 ELSE 1 END, id"
            ).fetchall()
        return [_row(row) for row in rows]

    def recent_training_runs(self, guild_id: int | None, limit: int = 5) -> list[TrainingRunRow]:
        """The last runs that ended, newest first (of one server, or of all)."""
        where, args = ("", ()) if guild_id is None else ("AND guild_id = ?", (guild_id,))
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT * FROM training_runs WHERE state IN {ENDED} {where}"
                " ORDER BY COALESCE(ended_at, created_at) DESC, id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_row(row) for row in rows]
