"""scripts/evaluate_checkpoint.py gives what the trainer gives: the run's test_ranks.json and its metrics' test_by_rating.

Runs finished before those files existed get them by re-evaluating their checkpoint, so the two must agree
byte for byte on a checkpoint whose run wrote them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hf_seqrec.inference.evaluate_command import evaluate_main
from hf_seqrec.training.output_dir import TEST_RANKS_FILE
from testing_utils import REPO, run_finetune, script_env

NUM_USERS, NUM_ITEMS, PER_USER = 40, 30, 12
EVAL_USERS, BOOTSTRAP = "30", "10"  # fewer than every user: the first-N cut must agree too


def _rated_interactions() -> pd.DataFrame:
    """Users 1..40 with 12 distinct items each and a rating of 1..5 that depends on user and item."""
    rng = np.random.default_rng(0)
    rows = [
        {"user_id": str(user), "item_id": str(item), "timestamp": 1000 * user + step, "rating": float((3 * user + item) % 5 + 1)}
        for user in range(1, NUM_USERS + 1)
        for step, item in enumerate(rng.choice(np.arange(1, NUM_ITEMS + 1), size=PER_USER, replace=False))
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory) -> Path:
    """A few optimizer steps of a tiny SASRec on rated data: a checkpoint with test_ranks.json and test_by_rating."""
    root = tmp_path_factory.mktemp("rated-run")
    data = root / "interactions.csv"
    _rated_interactions().to_csv(data, index=False)
    output = root / "run"
    done = run_finetune(
        "--dataset", str(data), "--rating_column", "rating", "--backbone", "sasrec", "--hidden_size", "16",
        "--num_layers", "1", "--max_len", "8", "--batch_size", "16", "--eval_batch_size", "16", "--max_steps", "4",
        "--num_epochs", "2", "--eval_max_users", EVAL_USERS, "--bootstrap_samples", BOOTSTRAP, "--mixed_precision", "no",
        "--report_to", "none", "--output_dir", str(output),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def _evaluate(run: Path, out: Path, *extra: str) -> tuple[dict, Path]:
    """Run scripts/evaluate_checkpoint.py on ``run`` as a user would; its metrics and the path of its ranks file."""
    metrics, ranks = out / "metrics.json", out / "ranks.json"
    command = [
        sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(run), "--split", "test",
        "--max_users", EVAL_USERS, "--bootstrap_samples", BOOTSTRAP, "--batch_size", "16",
        "--output", str(metrics), "--ranks_output", str(ranks), *extra,
    ]
    done = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(metrics.read_text()), ranks


def test_evaluate_checkpoint_writes_the_runs_test_ranks_and_rating_metrics(rated_run, tmp_path):
    evaluated, ranks_path = _evaluate(rated_run, tmp_path)
    saved = json.loads((rated_run / "metrics.json").read_text())
    assert ranks_path.read_bytes() == (rated_run / TEST_RANKS_FILE).read_bytes()  # same keys, order, values, layout
    ranks = json.loads(ranks_path.read_text())
    assert ranks["n_users"] == int(EVAL_USERS) and len(ranks["target_ratings"]) == len(ranks["target_train_counts"]) == int(EVAL_USERS)
    assert evaluated["test"] == saved["test"]
    assert evaluated["test_by_rating"] == saved["test_by_rating"]
    assert evaluated["test_by_rating"]["n_test_users_liked"] > 0


def test_data_without_ratings_gives_neither_ratings_nor_rating_metrics(rated_run, tmp_path):
    # The same interactions read without their rating column: the same catalogue, nothing rated.
    config = tmp_path / "unrated.yaml"
    config.write_text(f"dataset: {json.dumps(str(rated_run.parent / 'interactions.csv'))}\n")
    evaluated, ranks_path = _evaluate(rated_run, tmp_path, "--config", str(config))
    ranks = json.loads(ranks_path.read_text())
    assert "test_by_rating" not in evaluated and "target_ratings" not in ranks
    assert ranks["ranks"] == json.loads((rated_run / TEST_RANKS_FILE).read_text())["ranks"]


def test_ranks_output_needs_the_test_split(rated_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        evaluate_main(["--model", str(rated_run), "--split", "validation", "--ranks_output", str(tmp_path / "ranks.json")])
    assert stopped.value.code == 2 and "--ranks_output" in capsys.readouterr().err
    assert not (tmp_path / "ranks.json").exists()
