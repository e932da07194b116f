# Copyright 2025 The hf_seqrec Authors. Licensed under the Apache License, Version 2.0.
"""Next-item ranking metrics (HR@K, NDCG@K, MRR) with percentile-bootstrap intervals.

An `evaluate` metric module. It is loaded from its directory, with no network access:
`evaluate.load("path/to/next_item_ranking")`.

Note for maintainers: evaluate scans this file's import lines with a regular expression
and tries to import every name it finds, so keep exactly one module per import line
(`import a, b` makes it look for a library called "a,").
"""

import datasets
import evaluate
import numpy as np


_CITATION = """\
@inproceedings{krichene2020sampled,
  title     = {On Sampled Metrics for Item Recommendation},
  author    = {Krichene, Walid and Rendle, Steffen},
  booktitle = {Proceedings of the 26th ACM SIGKDD International Conference on Knowledge Discovery \\& Data Mining},
  year      = {2020}
}
@book{efron1994bootstrap,
  title     = {An Introduction to the Bootstrap},
  author    = {Efron, Bradley and Tibshirani, Robert J.},
  publisher = {Chapman \\& Hall/CRC},
  year      = {1994}
}
"""

_DESCRIPTION = """\
Full-catalogue next-item ranking metrics for sequential recommendation, one target item per user.

The input is, for every evaluated user, the 1-based rank of that user's held-out target item in a
ranking of the whole item catalogue (items already in the user's history masked, ties counted
pessimistically; see `hf_seqrec.evaluation.ranking.target_ranks`). From the ranks it reports
HR@K (hit rate, equal to Recall@K with one target), NDCG@K (gain 1/log2(rank + 1) when rank <= K,
else 0; the ideal DCG is 1 because there is one relevant item), and MRR (mean of 1/rank, no cut-off),
each averaged over users, with a percentile-bootstrap confidence interval over users.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): 1-based rank of each user's target item, one entry per user.
        Rank 1 means the target was the top-scored item. Every rank must be >= 1.
        There is no `references` input: the target is already folded into the rank. evaluate
        silently ignores a `references` argument, so do not rely on it for anything.
    ks (`Sequence[int]`, defaults to `(1, 5, 10, 20)`): cut-offs for HR@K and NDCG@K.
    n_bootstrap (`int`, defaults to 1000): number of bootstrap resamples of the users.
        0 skips the bootstrap and returns an empty `intervals` dict.
    confidence (`float`, defaults to 0.95): coverage of the percentile interval, in (0, 1).
    seed (`int`, defaults to 0): seed for `numpy.random.default_rng`; the same ranks and seed
        give the same intervals.
Returns:
    A flat, JSON-serialisable dict of plain Python numbers:
    `hr@K` and `ndcg@K` for every K, `mrr`, `n_users` (int), and `intervals`:
    `{"hr@10": [low, high], ..., "mrr": [low, high]}`, one entry per metric.
Examples:
    >>> metric = evaluate.load("hf_seqrec/evaluation/metrics/next_item_ranking")
    >>> out = metric.compute(predictions=[1, 3, 12], ks=[1, 10], n_bootstrap=0)
    >>> out["hr@10"], round(out["ndcg@10"], 4), round(out["mrr"], 4), out["n_users"]
    (0.6666666666666666, 0.5, 0.4722, 3)
"""

DEFAULT_KS = (1, 5, 10, 20)

# Upper bound on resampled indices held in memory at once (int64: 32 MiB). The bootstrap is drawn
# in chunks of resamples below this bound, so 1000 x 1e6 users does not need 8 GB; the chunking
# depends only on the number of users, so a given (ranks, seed) always gives the same result.
_MAX_DRAWS_PER_CHUNK = 1 << 22


def _validated_ks(ks):
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    out = []
    for k in ks:
        if isinstance(k, bool) or int(k) != k or int(k) < 1:
            raise ValueError(f"every cut-off in `ks` must be an integer >= 1, got {k!r} in {tuple(ks)!r}")
        if int(k) not in out:
            out.append(int(k))
    if not out:
        raise ValueError("`ks` is empty: pass at least one cut-off, e.g. ks=(1, 5, 10, 20)")
    return out


def _per_user_metrics(ranks, ks):
    """Return metric names and a [n_metrics, n_users] float64 matrix of per-user values."""
    ranks_f = ranks.astype(np.float64)
    gain = 1.0 / np.log2(ranks_f + 1.0)
    names, rows = [], []
    for k in ks:
        names.append(f"hr@{k}")
        rows.append((ranks <= k).astype(np.float64))
    for k in ks:
        names.append(f"ndcg@{k}")
        rows.append(np.where(ranks <= k, gain, 0.0))
    names.append("mrr")
    rows.append(1.0 / ranks_f)
    return names, np.stack(rows)


def _bootstrap_means(per_user, n_bootstrap, rng):
    """Means of each metric over `n_bootstrap` resamples of the users, drawn with replacement.

    Returns a [n_bootstrap, n_metrics] array. Row b uses the same resampled users for every
    metric, so the intervals of different metrics come from the same resamples.
    """
    n_metrics, n_users = per_user.shape
    means = np.empty((n_bootstrap, n_metrics), dtype=np.float64)
    chunk = max(1, min(n_bootstrap, _MAX_DRAWS_PER_CHUNK // n_users))
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        idx = rng.integers(0, n_users, size=(stop - start, n_users))
        for j in range(n_metrics):
            means[start:stop, j] = per_user[j][idx].mean(axis=1)
    return means


def ranking_metrics(ranks, ks=DEFAULT_KS, n_bootstrap=1000, confidence=0.95, seed=0):
    """Compute the metric dict from an array of 1-based ranks (the body of `NextItemRanking`)."""
    ranks = np.asarray(ranks)
    if ranks.ndim != 1:
        ranks = ranks.reshape(-1)
    if ranks.size == 0:
        raise ValueError("no ranks given: evaluate at least one user")
    if not np.issubdtype(ranks.dtype, np.integer):
        as_int = ranks.astype(np.int64)
        if not np.array_equal(as_int, ranks):
            raise ValueError("ranks must be whole numbers (1-based positions of the target item)")
        ranks = as_int
    ranks = ranks.astype(np.int64, copy=False)
    if ranks.min() < 1:
        bad = int(ranks.min())
        raise ValueError(f"ranks are 1-based and must be >= 1, got {bad}")
    ks = _validated_ks(ks)
    n_bootstrap = int(n_bootstrap)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")

    names, per_user = _per_user_metrics(ranks, ks)
    result = {name: float(value) for name, value in zip(names, per_user.mean(axis=1))}
    result["n_users"] = int(ranks.size)

    intervals = {}
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        means = _bootstrap_means(per_user, n_bootstrap, rng)
        alpha = 1.0 - confidence
        # Percentile bootstrap: the interval is the alpha/2 and 1 - alpha/2 quantiles of the
        # resampled means (numpy's default linear interpolation between order statistics).
        low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
        intervals = {name: [float(lo), float(hi)] for name, lo, hi in zip(names, low, high)}
    result["intervals"] = intervals
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NextItemRanking(evaluate.Metric):
    """HR@K, NDCG@K and MRR of full-catalogue next-item ranks, with bootstrap intervals."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Only `predictions`: a rank already encodes where the reference item landed.
            features=datasets.Features({"predictions": datasets.Value("int64")}),
            format="numpy",
            reference_urls=[
                "https://dl.acm.org/doi/10.1145/3394486.3403226",
                "https://en.wikipedia.org/wiki/Discounted_cumulative_gain",
                "https://en.wikipedia.org/wiki/Bootstrapping_(statistics)",
            ],
        )

    def _compute(self, predictions, ks=DEFAULT_KS, n_bootstrap=1000, confidence=0.95, seed=0):
        return ranking_metrics(predictions, ks=ks, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
