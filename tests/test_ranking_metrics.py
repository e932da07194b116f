"""Tests for full-catalogue target ranks and the `next_item_ranking` evaluate module."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_seqrec.evaluation.ranking import (
    DEFAULT_KS,
    METRIC_DIR,
    METRIC_NAMES,
    PROTOCOL,
    full_ranking_metrics,
    metric_names,
    target_ranks,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# A subprocess that must not reach the network: offline flags plus a socket that refuses to connect.
_NO_NETWORK_PRELUDE = textwrap.dedent(
    """
    import socket
    def _refuse(*args, **kwargs):
        raise RuntimeError("network access attempted")
    socket.socket.connect = _refuse
    socket.create_connection = _refuse
    """
)


def _offline_env(tmp_path: Path, pythonpath: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHONPATH"))}
    env.update(
        PYTHONPATH=pythonpath,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),  # fresh caches: nothing can come from an earlier load
        HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
    )
    return env


def _run_python(code: str, env: dict, cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK_PRELUDE + textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _brute_force_rank(scores, target, masked) -> int:
    """Reference implementation: a plain loop over items."""
    t = scores[target]
    t = -math.inf if math.isnan(t) else t
    rank = 1
    for i, s in enumerate(scores):
        if i == target or i in masked:
            continue
        s = -math.inf if math.isnan(s) else s
        if s >= t:  # strictly higher, or an equal score of another item (pessimistic)
            rank += 1
    return rank


# --------------------------------------------------------------------------- target_ranks


def test_target_ranks_strict_order_and_pessimistic_ties():
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.5, 0.0]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [3]  # items 1 and 3 above
    assert target_ranks(scores, torch.tensor([1])).tolist() == [2]  # item 3 ties: counted ahead
    assert target_ranks(scores, torch.tensor([3])).tolist() == [2]  # symmetric
    assert target_ranks(scores, torch.tensor([4])).tolist() == [5]
    assert target_ranks(scores, torch.tensor([0])).tolist() == [4]


def test_constant_scores_give_the_worst_rank():
    n = 7
    scores = torch.zeros(3, n)
    ranks = target_ranks(scores, torch.tensor([0, 3, 6]))
    assert ranks.tolist() == [n, n, n]
    # with two history items masked the worst rank is n - 2
    seen = torch.tensor([[1, 2], [1, 2], [-1, -1]])
    assert target_ranks(scores, torch.tensor([0, 3, 6]), seen=seen).tolist() == [n - 2, n - 2, n]
    # ... which the metrics see as zero hits at every cut-off
    metrics = full_ranking_metrics(target_ranks(scores, torch.tensor([0, 3, 6])), ks=(1, 5), n_bootstrap=0)
    assert metrics["hr@1"] == 0.0 and metrics["hr@5"] == 0.0


def test_seen_items_are_masked_and_padding_ignored():
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.1, 0.7, 0.2],
            [0.9, 0.8, 0.1, 0.7, 0.2],
        ]
    )
    targets = torch.tensor([3, 3])
    seen = torch.tensor([[0, -1, -1], [0, 1, -1]])
    assert target_ranks(scores, targets).tolist() == [3, 3]
    assert target_ranks(scores, targets, seen=seen).tolist() == [2, 1]
    # masked items also do not count as ties
    tied = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert target_ranks(tied, torch.tensor([2]), seen=torch.tensor([[0, 1]])).tolist() == [2]


def test_target_in_history_is_never_masked():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.2]])
    # item 3 is both the target and in the history (repeat consumption); item 0 is also seen
    ranks = target_ranks(scores, torch.tensor([3]), seen=torch.tensor([[3, 0, 3, -1]]))
    assert ranks.tolist() == [2]  # only item 1 (0.8) is above; item 0 masked; the target itself kept
    # and a candidate mask that excludes the target does not remove it either
    cand = torch.tensor([False, True, True, False, True])
    assert target_ranks(scores, torch.tensor([3]), candidate_mask=cand).tolist() == [2]


def test_candidate_mask_1d_and_2d():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.2], [0.1, 0.2, 0.3, 0.4, 0.5]])
    targets = torch.tensor([4, 0])
    assert target_ranks(scores, targets).tolist() == [4, 5]
    cand_1d = torch.tensor([True, False, True, True, True])
    assert target_ranks(scores, targets, candidate_mask=cand_1d).tolist() == [3, 4]
    cand_2d = torch.tensor([[False, False, True, True, True], [True, True, True, False, False]])
    assert target_ranks(scores, targets, candidate_mask=cand_2d).tolist() == [2, 3]
    # seen and candidates combine
    seen = torch.tensor([[3], [2]])
    assert target_ranks(scores, targets, seen=seen, candidate_mask=cand_2d).tolist() == [1, 2]


def test_exact_comparisons_without_tolerance_or_downcast():
    one = torch.tensor(1.0, dtype=torch.float64)
    next_up = torch.nextafter(one, torch.tensor(2.0, dtype=torch.float64))
    scores = torch.stack([one, next_up, one]).unsqueeze(0)  # float64; would all tie in float32
    assert target_ranks(scores, torch.tensor([0])).tolist() == [3]  # item 1 above, item 2 tie
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1]
    # float16 / bfloat16 / integer scores are compared in their own dtype
    for dtype in (torch.float16, torch.bfloat16, torch.int64):
        s = torch.tensor([[3, 1, 3, 2]], dtype=dtype)
        assert target_ranks(s, torch.tensor([2])).tolist() == [2]


def test_scores_are_not_modified():
    scores = torch.tensor([[0.3, float("nan"), 0.3, 0.1], [0.0, 0.0, 1.0, float("nan")]])
    before = scores.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        target_ranks(scores, torch.tensor([0, 2]), seen=torch.tensor([[2], [-1]]), candidate_mask=torch.ones(4, dtype=torch.bool))
    assert torch.equal(torch.isnan(scores), torch.isnan(before))
    assert torch.equal(torch.nan_to_num(scores), torch.nan_to_num(before))


def test_nan_scores_rank_as_minus_infinity():
    scores = torch.tensor([[float("nan"), 0.2, float("nan"), -1.0, float("-inf")]])
    with pytest.warns(RuntimeWarning, match="NaN"):
        ranks = target_ranks(scores, torch.tensor([3]))
    assert ranks.tolist() == [2]  # NaNs never outrank a finite target: only 0.2 is above
    with pytest.warns(RuntimeWarning):
        # a NaN target sits below every finite score and ties with the other NaN and -inf items
        assert target_ranks(scores, torch.tensor([0])).tolist() == [5]


def test_matches_brute_force_on_random_ties():
    rng = np.random.default_rng(123)
    batch, n = 16, 12
    scores_np = rng.integers(0, 4, size=(batch, n)).astype(np.float32)  # many ties
    targets_np = rng.integers(0, n, size=batch)
    seen_np = rng.integers(-1, n, size=(batch, 5))
    cand_np = rng.random((batch, n)) < 0.7
    ranks = target_ranks(
        torch.from_numpy(scores_np),
        torch.from_numpy(targets_np),
        seen=torch.from_numpy(seen_np),
        candidate_mask=torch.from_numpy(cand_np),
    )
    assert ranks.dtype == torch.int64 and ranks.shape == (batch,)
    for b in range(batch):
        masked = {int(i) for i in seen_np[b] if i >= 0} | {i for i in range(n) if not cand_np[b, i]}
        expected = _brute_force_rank(scores_np[b].tolist(), int(targets_np[b]), masked)
        assert ranks[b].item() == expected, (b, scores_np[b], targets_np[b], masked)


def test_input_validation():
    scores = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="shape"):
        target_ranks(torch.zeros(4), torch.tensor([0]))
    with pytest.raises(ValueError, match="targets"):
        target_ranks(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        target_ranks(scores, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="seen"):
        target_ranks(scores, torch.tensor([0, 1]), seen=torch.tensor([[5], [0]]))
    with pytest.raises(ValueError, match="candidate_mask"):
        target_ranks(scores, torch.tensor([0, 1]), candidate_mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        target_ranks(scores, torch.tensor([0, 1]), candidate_mask=torch.ones(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_target_ranks_on_cuda_matches_cpu():
    scores = torch.randint(0, 5, (8, 50)).float()
    targets = torch.randint(0, 50, (8,))
    seen = torch.randint(-1, 50, (8, 10))
    cpu = target_ranks(scores, targets, seen=seen)
    gpu = target_ranks(scores.cuda(), targets.cuda(), seen=seen.cuda())
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


# --------------------------------------------------------------------------- metrics


def test_hand_computed_metrics():
    ranks = [1, 2, 5, 11, 30]
    out = full_ranking_metrics(ranks, n_bootstrap=0)
    assert out["n_users"] == 5
    assert out["hr@1"] == pytest.approx(1 / 5)
    assert out["hr@5"] == pytest.approx(3 / 5)
    assert out["hr@10"] == pytest.approx(3 / 5)
    assert out["hr@20"] == pytest.approx(4 / 5)
    assert out["ndcg@1"] == pytest.approx(1 / 5)
    assert out["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert out["ndcg@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(12)) / 5)
    assert out["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 11 + 1 / 30) / 5)
    assert out["intervals"] == {}


def test_output_format_is_flat_plain_and_json_serialisable():
    out = full_ranking_metrics(np.array([1, 3, 12, 250], dtype=np.int64))
    assert list(out) == [*METRIC_NAMES, "n_users", "intervals"]
    assert set(out["intervals"]) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert type(out[name]) is float
        low, high = out["intervals"][name]
        assert type(low) is float and type(high) is float
    assert type(out["n_users"]) is int
    assert json.loads(json.dumps(out)) == out
    # custom cut-offs
    custom = full_ranking_metrics([1, 3], ks=[3, 50], n_bootstrap=10)
    assert list(custom) == [*metric_names((3, 50)), "n_users", "intervals"]
    assert custom["hr@3"] == 1.0 and custom["ndcg@50"] == pytest.approx((1 + 0.5) / 2)


def test_accepts_lists_arrays_and_tensors_alike():
    ranks = [1, 4, 9, 100, 2]
    ref = full_ranking_metrics(ranks)
    assert full_ranking_metrics(np.array(ranks, dtype=np.int32)) == ref
    assert full_ranking_metrics(torch.tensor(ranks)) == ref
    assert full_ranking_metrics(torch.tensor(ranks, dtype=torch.float32)) == ref  # whole floats are fine


@pytest.mark.parametrize("bad", [[], [0, 1], [3, -2], [1.5, 2.0], np.zeros((2, 2), dtype=np.int64)])
def test_invalid_ranks_raise(bad):
    with pytest.raises(ValueError):
        full_ranking_metrics(bad)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="ks"):
        full_ranking_metrics([1, 2], ks=[0, 10])
    with pytest.raises(ValueError, match="confidence"):
        full_ranking_metrics([1, 2], confidence=1.0)
    with pytest.raises(ValueError, match="n_bootstrap"):
        full_ranking_metrics([1, 2], n_bootstrap=-1)


def test_intervals_contain_the_mean_and_narrow_with_more_users():
    rng = np.random.default_rng(7)
    # geometric ranks: hit rates around 0.1-0.6, like a reasonable recommender
    small = rng.geometric(0.05, size=100)
    large = rng.geometric(0.05, size=10_000)
    out_small = full_ranking_metrics(small)
    out_large = full_ranking_metrics(large)
    for out in (out_small, out_large):
        for name in METRIC_NAMES:
            low, high = out["intervals"][name]
            assert low <= out[name] <= high, (name, low, out[name], high)
            assert 0.0 <= low <= high <= 1.0
    for name in METRIC_NAMES:
        width_small = np.diff(out_small["intervals"][name])[0]
        width_large = np.diff(out_large["intervals"][name])[0]
        assert width_large < width_small / 3, name  # ~ 1/sqrt(100) = 1/10 narrower in theory
    # a wider confidence gives a wider interval
    wide = full_ranking_metrics(small, confidence=0.99)
    assert np.diff(wide["intervals"]["mrr"])[0] > np.diff(out_small["intervals"]["mrr"])[0]


def test_bootstrap_is_the_percentile_bootstrap_of_user_means():
    """Re-derive the interval with an independent, naive implementation from the same RNG stream."""
    ranks = np.array([1, 2, 2, 7, 15, 40, 3, 1, 90, 11])
    n_boot, seed = 200, 5
    out = full_ranking_metrics(ranks, ks=(10,), n_bootstrap=n_boot, confidence=0.9, seed=seed)
    idx = np.random.default_rng(seed).integers(0, len(ranks), size=(n_boot, len(ranks)))
    resampled = ranks[idx]
    boot_hr = (resampled <= 10).mean(axis=1)
    boot_mrr = (1.0 / resampled).mean(axis=1)
    assert out["intervals"]["hr@10"] == pytest.approx(list(np.quantile(boot_hr, [0.05, 0.95])))
    assert out["intervals"]["mrr"] == pytest.approx(list(np.quantile(boot_mrr, [0.05, 0.95])))


def test_same_seed_same_result_and_different_seed_differs():
    ranks = np.random.default_rng(0).integers(1, 300, size=500)
    first = full_ranking_metrics(ranks, seed=3)
    second = full_ranking_metrics(ranks, seed=3)
    assert first == second
    other = full_ranking_metrics(ranks, seed=4)
    assert other["mrr"] == first["mrr"]
    assert other["intervals"] != first["intervals"]


def test_bootstrap_is_fast_for_movielens_sized_input():
    ranks = np.random.default_rng(1).integers(1, 1683, size=943)
    full_ranking_metrics(ranks)  # warm up: loads the evaluate module once
    start = time.perf_counter()
    full_ranking_metrics(ranks, n_bootstrap=1000)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"1000 bootstrap resamples of 943 users took {elapsed:.2f}s"


def test_large_input_is_chunked_but_consistent():
    ranks = np.random.default_rng(2).integers(1, 1000, size=20_000)
    out = full_ranking_metrics(ranks, n_bootstrap=300)  # 6M draws > one chunk
    assert out["n_users"] == 20_000
    for name in METRIC_NAMES:
        low, high = out["intervals"][name]
        assert low <= out[name] <= high


# --------------------------------------------------------------------------- evaluate module


def test_evaluate_load_direct_with_batches():
    import evaluate

    metric = evaluate.load(str(METRIC_DIR), keep_in_memory=True)
    assert list(metric.features) == ["predictions"]  # no references: a rank already encodes the target
    metric.add_batch(predictions=[1, 2])
    metric.add_batch(predictions=np.array([5, 11, 30]))
    out = metric.compute(ks=[5], n_bootstrap=50)
    assert out["n_users"] == 5
    assert out["hr@5"] == pytest.approx(3 / 5)
    assert out == full_ranking_metrics([1, 2, 5, 11, 30], ks=[5], n_bootstrap=50)
    # the module validates on its own too (it can be used without hf_seqrec)
    with pytest.raises(ValueError, match=">= 1"):
        metric.compute(predictions=[3, 0])
    with pytest.raises(ValueError, match="no ranks"):
        metric.compute(predictions=[])


def test_metric_card_documents_the_protocol():
    card = (METRIC_DIR / "README.md").read_text(encoding="utf-8")
    for phrase in ("full ranking", "masked", "pessimistic", "bootstrap", "1 / log2(rank + 1)", "references"):
        assert phrase.lower() in card.lower(), phrase


def test_module_keeps_one_import_per_line():
    source = (METRIC_DIR / "next_item_ranking.py").read_text(encoding="utf-8")
    for line in source.splitlines():
        if line.startswith("import "):
            assert "," not in line, f"evaluate's import scanner cannot parse: {line!r}"


def test_protocol_constants():
    assert DEFAULT_KS == (1, 5, 10, 20)
    assert METRIC_NAMES == (
        "hr@1", "hr@5", "hr@10", "hr@20", "ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "mrr",
    )
    assert json.loads(json.dumps(PROTOCOL)) == PROTOCOL
    assert PROTOCOL["ks"] == list(DEFAULT_KS)
    assert PROTOCOL["min_interactions"] == 3
    assert PROTOCOL["interval"] == {
        "method": "percentile bootstrap over users (resampled with replacement)",
        "confidence": 0.95,
        "n_resamples": 1000,
        "rng": "numpy.random.default_rng",
        "seed": 0,
    }
    for word in ("pessimistic", "never masked", "leave-one-out", "full"):
        assert word in json.dumps(PROTOCOL), word


def test_evaluate_load_works_offline_from_a_fresh_cache(tmp_path):
    out = _run_python(
        f"""
        import json
        import evaluate
        metric = evaluate.load({str(METRIC_DIR)!r})
        print(json.dumps(metric.compute(predictions=[1, 3, 12], ks=[1, 10], n_bootstrap=20)))
        """,
        env=_offline_env(tmp_path, pythonpath=""),
        cwd=tmp_path,
    )
    assert out["hr@10"] == pytest.approx(2 / 3)
    assert out["ndcg@10"] == pytest.approx(0.5)


def test_metric_ships_as_package_data_and_loads_when_installed(tmp_path):
    """Build a wheel from a copy of the project, install it by unpacking, and load the metric."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", project / "pyproject.toml")
    readme = REPO_ROOT / "README.md"
    if readme.exists():
        shutil.copy(readme, project / "README.md")
    else:  # pyproject names a readme; the real one may not be written yet
        (project / "README.md").write_text("# hf_seqrec\n", encoding="utf-8")
    shutil.copytree(REPO_ROOT / "hf_seqrec", project / "hf_seqrec", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta; print(build_meta.build_wheel('dist'))"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    wheel = project / "dist" / build.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for rel in ("next_item_ranking.py", "README.md"):
        assert f"hf_seqrec/evaluation/metrics/next_item_ranking/{rel}" in names, sorted(names)

    installed_dir = tmp_path / "site" / "hf_seqrec" / "evaluation" / "metrics" / "next_item_ranking"
    env = _offline_env(tmp_path, pythonpath=str(tmp_path / "site"))
    # 1. evaluate alone, from the installed directory (independent of the rest of the package)
    out = _run_python(
        f"""
        import json
        import evaluate
        print(json.dumps(evaluate.load({str(installed_dir)!r}).compute(predictions=[2, 4], n_bootstrap=0)))
        """,
        env=env,
        cwd=tmp_path,
    )
    assert out["hr@5"] == 1.0 and out["hr@1"] == 0.0
    # 2. the library entry point, imported from the installed copy rather than the source tree
    out = _run_python(
        """
        import json
        import hf_seqrec.evaluation.ranking as ranking
        result = ranking.full_ranking_metrics([1, 3, 12], n_bootstrap=20)
        result["module_file"] = ranking.__file__
        print(json.dumps(result))
        """,
        env=env,
        cwd=tmp_path,
    )
    assert Path(out["module_file"]).is_relative_to(tmp_path / "site")
    assert out["hr@10"] == pytest.approx(2 / 3)
