"""`/radio_train_status` in words: the run going now, the line, the last runs.

A server sees its own runs only; runs of other servers ahead in line count
in its place but are not named (bot.ownership). The bot's owner sees every
server's runs. The live progress of the running run comes from the trainer;
the rest from the store (bot.store.training), so the last runs are there
after a restart too.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.adapter_library import key_name
from bot.render import safe
from bot.store import TrainingRunRow
from bot.training.board import step_line
from bot.training.progress import TrainingProgress

ICONS = {"done": "✅", "stopped": "⏹️", "failed": "❌", "cancelled": "🚫", "queued": "⏳", "running": "🎓"}
NONE_YET = "No training runs from this server yet: start one with /radio_train."


def run_title(row: TrainingRunRow) -> str:
    if row.kind == "preprocess":
        return f"#{row.id} preprocessing dataset **{safe(row.dataset, 64)}**"
    return f"#{row.id} adapter **{safe(row.name, 64)}** on **{safe(row.dataset, 64)}**"


def _ended_line(row: TrainingRunRow) -> str:
    line = f"{ICONS.get(row.state, '•')} {run_title(row)}: {row.state}"
    if row.message:
        line += f" ({safe(row.message, 200)})"
    if row.adapter and row.state in ("done", "stopped") and row.kind == "train":
        line += f"; play it with `/radio_adapter name:{safe(key_name(row.adapter), 64)}`"
    return line


def status_text(
    live: TrainingProgress | None,
    waiting: Sequence[TrainingRunRow],
    recent: Sequence[TrainingRunRow],
    guild_id: int,
    *,
    everyone: bool = False,
) -> str:
    """What a member of server `guild_id` is shown (`everyone`: the bot's owner)."""

    def shown(row: TrainingRunRow) -> bool:
        return everyone or row.guild_id == guild_id

    lines: list[str] = []
    for ahead, row in enumerate(waiting):
        if not shown(row):
            continue
        if row.state == "running":
            line = f"🎓 {run_title(row)}: running"
            if live is not None and live.run_id == row.id:
                line += f", {safe(live.message, 200)}"
                step = step_line(live)
                if step is not None:
                    line += f"\n  {step}"
            lines.append(line)
        else:
            runs = "run" if ahead == 1 else "runs"
            lines.append(f"⏳ {run_title(row)}: waits in line, {ahead} {runs} ahead of it")
    others = [row for row in waiting if not shown(row)]
    if others:
        lines.append(f"(and {len(others)} run(s) of other servers in line)")
    finished = [row for row in recent if shown(row)]
    if finished:
        lines.append("Last runs:")
        lines += [_ended_line(row) for row in finished]
    return "\n".join(lines) or NONE_YET
