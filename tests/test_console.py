"""What a person sees: the README's training command, its output sent to a file, has no warning, no
library info lines and no progress frames, and one readable line per epoch."""

from __future__ import annotations

import logging
import random
import re
import shlex
import subprocess
import sys

import pytest

from hf_seqrec.entry_points import run_cli
from hf_seqrec.training.finetune_command import finetune_main
from hf_seqrec.console import configure_console
from hf_seqrec.training.console import TrainingConsole, format_duration, format_estimate, planned_epochs
from testing_utils import REPO, script_env

README = (REPO / "README.md").read_text(encoding="utf-8")
DURATION = r"(\d+s|\d+m\d\ds|\d+h\d\dm)"
EPOCH_LINE = re.compile(
    rf"^epoch (\d+)/(\d+)  train loss \d+\.\d\d  val NDCG@10 \d\.\d{{4}}( \(best\))?  {DURATION} elapsed(, ~(\d+s|\d+m|\d+h\d\dm) left)?$"
)


@pytest.fixture
def restored_logging():
    """configure_console sets process-wide log levels; put them back for the tests that follow."""
    root, ours = logging.getLogger(), logging.getLogger("hf_seqrec")
    levels = root.level, ours.level
    yield
    root.setLevel(levels[0])
    ours.setLevel(levels[1])


def test_durations_read_at_a_glance():
    assert [format_duration(s) for s in (0, 42.4, 130, 3599, 3900)] == ["0s", "42s", "2m10s", "59m59s", "1h05m"]
    assert [format_estimate(s) for s in (3, 44, 250, 5400)] == ["~10s", "~40s", "~4m", "~1h30m"]


def test_max_steps_shortens_the_planned_epochs():
    assert planned_epochs(total_steps=600, steps_per_epoch=100, num_epochs=6) == 6
    assert planned_epochs(total_steps=150, steps_per_epoch=100, num_epochs=6) == 2
    assert planned_epochs(total_steps=3, steps_per_epoch=100, num_epochs=6) == 1


def test_the_epoch_line_marks_the_best_epoch_and_the_time_left(monkeypatch):
    clock = iter([0.0, 130.0, 390.0])
    monkeypatch.setattr("hf_seqrec.training.console.time.perf_counter", lambda: next(clock))
    console = TrainingConsole(total_steps=600, initial_step=0, steps_per_epoch=100, num_epochs=6)
    record = {"epoch": 3, "train_loss": 5.7249, "validation_ndcg@10": 0.10031}
    assert console.epoch_line(record, best=True, global_step=300) == (
        "epoch 3/6  train loss 5.72  val NDCG@10 0.1003 (best)  2m10s elapsed, ~2m left"
    )
    last = {"epoch": 6, "train_loss": 5.5, "validation_ndcg@10": 0.0999}
    assert console.epoch_line(last, best=False, global_step=600) == "epoch 6/6  train loss 5.50  val NDCG@10 0.0999  6m30s elapsed"
    console.close()


def test_libraries_log_at_warning_unless_asked_and_hf_seqrec_always_at_info(restored_logging):
    configure_console()
    assert logging.getLogger("accelerate.checkpointing").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("hf_seqrec.data.prepare").getEffectiveLevel() == logging.INFO
    configure_console("info")
    assert logging.getLogger("accelerate.checkpointing").getEffectiveLevel() == logging.INFO
    with pytest.raises(ValueError, match="log_level: expected one of debug, info, warning, error, got 'loud'"):
        configure_console("loud")


def test_a_bad_log_level_is_a_one_line_error(restored_logging, tmp_path, capsys):
    assert run_cli(finetune_main, ["--backbone", "tiny-llama", "--log_level", "loud", "--output_dir", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == "error: log_level: expected one of debug, info, warning, error, got 'loud'"


def readme_training_command() -> list[str]:
    """The command the README says `make train` runs, through this Python's accelerate launcher."""
    match = re.search(r"`make train` runs `(accelerate launch [^`]+)`", README)
    assert match, "the README no longer says which command `make train` runs"
    words = shlex.split(match.group(1))
    return [sys.executable, "-m", "accelerate.commands.launch", *words[2:]]


def test_the_readme_training_command_prints_a_clean_readable_log(tmp_path):
    """The README's main command on the tiny Llama and a small data file, its output going to a file.

    OMP_NUM_THREADS is left unset, as on a fresh machine: accelerate warns unless the command states
    the thread count.
    """
    rows = ["user_id,item_id,timestamp"]
    generator = random.Random(0)
    for user in range(80):
        rows += [f"u{user},{generator.randint(1, 40)},{time}" for time in range(generator.randint(6, 14))]
    data = tmp_path / "interactions.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    command = readme_training_command() + [
        "--backbone", "tiny-llama", "--backbone_layers", "none", "--dataset", str(data), "--max_len", "10",
        "--num_epochs", "3", "--bootstrap_samples", "10", "--report_to", "none", "--output_dir", str(tmp_path / "run"),
        # The README's teacher is a MovieLens-100K run; this data has none.
        "--teacher", "none",
    ]
    env = script_env()
    env.pop("OMP_NUM_THREADS")
    log = tmp_path / "train.log"
    with log.open("w") as output:  # a file, as under CI or a scheduler: not a terminal
        done = subprocess.run(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text, "progress-bar frames in a log file"
    lines = text.splitlines()
    noisy = [line for line in lines if "warning" in line.lower() or "INFO accelerate" in line]
    assert noisy == [], "\n".join(noisy)
    epochs = [line for line in lines if line.startswith("epoch")]
    matches = [EPOCH_LINE.match(line) for line in epochs]
    assert all(matches), "\n".join(epochs)
    assert [(m.group(1), m.group(2)) for m in matches] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert matches[0].group(3) == " (best)"  # the first epoch is the best so far
    assert [m.group(5) is not None for m in matches] == [True, True, False]  # time left, except after the last
    assert any(line.startswith("test NDCG@10 ") for line in lines[lines.index(epochs[-1]):])
