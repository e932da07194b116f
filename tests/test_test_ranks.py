"""Every run writes test_ranks.json: one 1-based test rank per evaluated user, the ranks metrics.json's test metrics come from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_seqrec.training.output_dir import TEST_RANKS_FILE
from testing_utils import REPO, finetune_metrics


def _finetune(output_dir: Path, *extra: str) -> dict:
    return finetune_metrics(output_dir, "--output_dir", str(output_dir), "--bootstrap_samples", "10", "--report_to", "none", *extra)


def _check_ranks(output_dir: Path, metrics: dict, n_users: int) -> list[int]:
    saved = json.loads((output_dir / TEST_RANKS_FILE).read_text())
    assert saved["split"] == "test" and saved["rank_base"] == 1
    assert len(saved["ranks"]) == len(saved["user_ids"]) == metrics["test"]["n_users"] == n_users
    assert len(set(saved["user_ids"])) == n_users and all(rank >= 1 for rank in saved["ranks"])
    with pytest.MonkeyPatch.context() as patch:  # benchmarks/ is no package: its modules import by file name
        patch.syspath_prepend(str(REPO / "benchmarks"))
        from quality import ndcg_at_10
    assert ndcg_at_10(saved["ranks"]).mean() == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-12)
    return saved["ranks"]


def test_tiny_run_writes_the_test_ranks_behind_its_metrics(tmp_path):
    run = tmp_path / "tiny"
    metrics = _finetune(run, "--config", str(REPO / "configs" / "tiny.yaml"), "--max_steps", "4", "--eval_max_users", "120")
    _check_ranks(run, metrics, 120)
    # Each test target's training count, as the benchmarks compute it from the data (the long-tail breakdown).
    saved = json.loads((run / TEST_RANKS_FILE).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO / "benchmarks"))
        from benchmark_utils import target_train_counts
    counts = target_train_counts()
    assert saved["target_train_counts"] == [counts[user] for user in saved["user_ids"]]
    assert min(saved["target_train_counts"]) >= 0 and max(saved["target_train_counts"]) >= 100


def test_popularity_writes_test_ranks_and_an_overwrite_replaces_them(tmp_path):
    run = tmp_path / "pop"
    _check_ranks(run, _finetune(run, "--backbone", "popularity", "--eval_max_users", "150"), 150)
    first = json.loads((run / TEST_RANKS_FILE).read_text())
    again = _finetune(run, "--backbone", "popularity", "--eval_max_users", "40", "--overwrite_output_dir")
    _check_ranks(run, again, 40)
    second = json.loads((run / TEST_RANKS_FILE).read_text())
    assert second["user_ids"] == first["user_ids"][:40] and second["ranks"] == first["ranks"][:40]  # test-split order


def test_paired_comparison_matches_users_by_id_and_pools_seeds(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from quality import ndcg_at_10, paired_comparison
    from scipy import stats

    rng = np.random.default_rng(0)
    users = [str(u) for u in range(200)]

    def row(model, seed, ranks, order=None):
        order = order or list(range(len(users)))
        return {"model": model, "seed": seed, "run_dir": f"runs/{model}-seed{seed}",
                "test_ranks": {"user_ids": [users[i] for i in order], "ranks": [int(ranks[i]) for i in order]}}

    ranks_a = {s: rng.integers(1, 30, len(users)) for s in (0, 1)}
    ranks_b = {s: rng.integers(1, 40, len(users)) for s in (0, 1, 2)}
    rows_a = [row("a", s, ranks_a[s]) for s in (0, 1)]
    rows_b = [row("b", s, ranks_b[s], order=list(reversed(range(len(users))))) for s in (0, 1, 2)]  # other user order

    result = paired_comparison(rows_a, rows_b, n_resamples=2000, seed=0)
    a = [v for s in (0, 1) for v in ndcg_at_10(ranks_a[s])]
    b = [v for s in (0, 1) for v in ndcg_at_10(ranks_b[s])]
    assert result["computed"] and result["seeds"] == [0, 1] and result["n_pairs"] == 400 and result["n_users"] == 200
    assert result["mean_difference"] == pytest.approx(sum(a) / 400 - sum(b) / 400)
    assert result["ratio_of_means"] == pytest.approx(sum(a) / sum(b))
    assert result["t_test"]["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    low, high = result["bootstrap"]["ci95"]
    assert low < result["mean_difference"] < high and 0 < result["bootstrap"]["p_value"] <= 1

    same = paired_comparison(rows_a, rows_a, n_resamples=100, seed=0)
    assert same["mean_difference"] == 0 and same["t_test"]["p_value"] == 1.0 and same["bootstrap"]["p_value"] == 1.0

    old = dict(rows_b[0], test_ranks=None)
    missing = paired_comparison(rows_a[:1], [old], n_resamples=100, seed=0)
    assert not missing["computed"] and missing["reason"] == "run `runs/b-seed0` has no test_ranks.json"
