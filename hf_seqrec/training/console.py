"""What a training run shows: a step bar on a terminal, and one plain line per epoch everywhere.

    epoch 3/6  train loss 5.72  val NDCG@10 0.1003 (best)  2m10s elapsed, ~4m left

The bar is drawn only on a terminal (`hf_seqrec.console.terminal_stream`): in a log file it would be
thousands of ``\\r`` frames with the epoch lines buried among them. The epoch lines are written whole
and flushed, above the bar when there is one, so ``grep ^epoch`` finds every one of them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tqdm.auto import tqdm

from ..console import say, terminal_stream


def format_duration(seconds: float) -> str:
    """``42s``, ``2m10s``, ``1h05m``: a duration a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_estimate(seconds: float) -> str:
    """``~40s``, ``~4m``, ``~1h05m``: a remaining time, rounded no finer than it can be trusted."""
    if seconds < 60:
        return f"~{max(10, int(round(seconds / 10.0)) * 10)}s"
    if seconds < 3600:
        return f"~{int(round(seconds / 60.0))}m"
    return "~" + format_duration(seconds)


def planned_epochs(total_steps: int, steps_per_epoch: int, num_epochs: int) -> int:
    """Epochs the run trains unless it stops early: ``num_epochs``, or fewer when ``max_steps`` ends it sooner."""
    if steps_per_epoch < 1:
        return num_epochs
    return max(1, min(num_epochs, math.ceil(total_steps / steps_per_epoch)))


class TrainingConsole:
    """The step bar and the epoch lines of one training run.

    Only the process that talks (``show``: the local main process) draws or prints anything. The
    time left is the time per optimizer step so far in this run (validation and checkpoints
    included) times the steps still to take; the last planned epoch's line has none.
    """

    def __init__(self, total_steps: int, initial_step: int, steps_per_epoch: int, num_epochs: int, show: bool = True) -> None:
        self.show = show
        self.total_steps = total_steps
        self.total_epochs = planned_epochs(total_steps, steps_per_epoch, num_epochs)
        self.start_step = initial_step
        self.start = time.perf_counter()
        stream = terminal_stream() if show else None
        self.bar = tqdm(
            total=total_steps, initial=initial_step, desc="train", file=stream, disable=stream is None, dynamic_ncols=True
        )

    def step(self, loss: float) -> None:
        """One optimizer step taken; ``loss`` (the epoch's running mean) is shown next to the bar."""
        self.bar.update(1)
        if not self.bar.disable:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch_line(self, record: dict[str, Any], best: bool, global_step: int) -> str:
        """The line of an epoch record (``epoch``, ``train_loss``, ``validation_ndcg@10``)."""
        elapsed = time.perf_counter() - self.start
        epoch = record["epoch"]
        line = (
            f"epoch {epoch}/{max(self.total_epochs, epoch)}  train loss {record['train_loss']:.2f}  "
            f"val NDCG@10 {record['validation_ndcg@10']:.4f}{' (best)' if best else ''}  {format_duration(elapsed)} elapsed"
        )
        steps_done, steps_left = global_step - self.start_step, self.total_steps - global_step
        if epoch < self.total_epochs and steps_done > 0 and steps_left > 0:
            line += f", {format_estimate(elapsed / steps_done * steps_left)} left"
        return line

    def end_epoch(self, record: dict[str, Any], best: bool, global_step: int) -> None:
        """Print the epoch's line, on a line of its own."""
        if self.show:
            say(self.epoch_line(record, best, global_step))

    def close(self) -> None:
        self.bar.close()
