"""The training runs in the store: the line in order, the last runs per server, and
both still there when the bot starts again (a new `Store` on the same file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store import InvalidValueError, Store

A, B = 1200000000000000001, 1200000000000000002


def add(store: Store, guild: int, name: str):
    return store.add_training_run(guild, channel_id=7, user_id=9, kind="train", dataset="tones", name=name, epochs=2)


def test_runs_keep_their_order_and_outcome_across_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "radio.db")
    first, second, third = add(store, A, "one"), add(store, B, "two"), add(store, A, "three")
    store.update_training_run(second.id, state="running", started_at=10.0)
    assert [r.id for r in store.waiting_training_runs()] == [second.id, first.id, third.id]
    store.update_training_run(second.id, state="done", ended_at=20.0, step=4, loss=0.5, adapter=f"g{B}-two")
    store.update_training_run(first.id, state="stopped", ended_at=30.0)
    with pytest.raises(InvalidValueError, match="invalid state 'lost'"):
        store.update_training_run(third.id, state="lost")
    with pytest.raises(InvalidValueError, match="invalid field 'guild_id'"):
        store.update_training_run(third.id, guild_id=B)  # progress fields only
    store.close()

    again = Store(tmp_path / "radio.db")
    try:
        assert [r.id for r in again.waiting_training_runs()] == [third.id]  # still in line
        assert [(r.id, r.state) for r in again.recent_training_runs(A)] == [(first.id, "stopped")]
        done = again.recent_training_runs(B)[0]
        assert (done.state, done.step, done.loss, done.adapter) == ("done", 4, 0.5, f"g{B}-two")
        assert [r.id for r in again.recent_training_runs(None)] == [first.id, second.id]
    finally:
        again.close()
