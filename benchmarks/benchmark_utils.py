"""What the benchmark scripts share: finetune commands and their logs, the machine, timing, and results files.

A benchmark runs as ``python benchmarks/<name>.py`` from the repository root, which puts this folder first
on ``sys.path``, so ``from benchmark_utils import ...`` finds this file (tests put the folder on ``sys.path``
the same way). Nothing here imports torch at module level: a benchmark that only rebuilds its report from
the JSON starts without it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "scripts" / "finetune.py"
RESULTS = REPO / "benchmarks" / "results"
# The LM the deployment benchmarks load by default: the 8-layer CPU default as the convergence study trained it.
DEFAULT_MODEL = REPO / "runs" / "ablations" / "convergence" / "base"


# ----------------------------------------------------------------------------- finetune runs
def finetune_command(config_file: str | None, options: dict[str, Any]) -> list[str]:
    """``scripts/finetune.py`` with ``config_file`` (relative to the repository) and ``options`` in their order.

    Only ``options`` are written out; everything else comes from the config file as it is when the command
    runs. A recorded command reproduces its run after the config file changes only if ``options`` pin every
    setting that matters, as the ablation studies do; the quality and cold-start benchmarks pass a config
    file plus a few options, so theirs follow the config file.
    """
    command = [sys.executable, str(FINETUNE)]
    if config_file:
        command += ["--config", str(REPO / config_file)]
    for key, value in options.items():
        command += finetune_option(key, value)
    return command + ["--overwrite_output_dir"]


def finetune_option(key: str, value: Any) -> list[str]:
    """One option as scripts/finetune.py reads it: --flag / --no-flag for booleans, comma-separated lists."""
    if isinstance(value, bool):
        return [f"--{key}" if value else f"--no-{key}"]
    if isinstance(value, (list, tuple)):
        return [f"--{key}", ",".join(map(str, value))]
    return [f"--{key}", "none" if value is None else str(value)]


def run_logged(command: list[str], log_path: Path, label: str) -> float:
    """Run a ``scripts/finetune.py`` command from the repository root, its output in ``log_path``.

    Returns the wall seconds; a failed run raises with the tail of its log, so a long benchmark stops
    at the first broken model instead of writing a row without numbers.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{label} failed (exit {result.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - start


def relative_command(command: list[str]) -> list[str]:
    """The command as typed from the repository root (no absolute paths of this machine)."""
    out = []
    for part in command:
        path = Path(part)
        if part == sys.executable:
            out.append("python")
        elif path.is_absolute() and REPO in path.parents:
            out.append(str(path.relative_to(REPO)))
        else:
            out.append(part)
    return out


def display_path(path: Path) -> str:
    """A path inside the repository relative to it; any other path absolute."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if REPO in path.parents else str(path)


def t_interval(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its two-sided 95% Student-t interval (None with fewer than 2 values)."""
    import math

    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * sd / math.sqrt(len(values))


# ----------------------------------------------------------------------------- machine and command line
def machine_summary() -> str:
    """One line: architecture, GPU name or CPU cores, torch version and threads."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    threads = torch.get_num_threads()
    return f"{platform.machine()} {device}; torch {torch.__version__}, {threads} thread{'' if threads == 1 else 's'}"


def machine(*packages: str) -> dict[str, Any]:
    """The CPU, its load, and the versions of Python, torch, transformers and ``packages`` (for latency rows)."""
    import importlib

    import torch
    import transformers

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **{name: importlib.import_module(name).__version__ for name in packages},
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none): other jobs slow a timed run down."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def run_header(script: str, argv: list[str] | None, load_before: Any, *packages: str) -> dict[str, Any]:
    """``command``, ``date`` and ``machine`` of a latency result; ``load_before``: the load when it started."""
    return {
        "command": f"HF_HUB_OFFLINE=1 python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {**machine(*packages), "load_average_at_start": load_before},
    }


def command_line(script: str, argv: list[str] | None) -> str:
    """How this benchmark was invoked, as typed from the repository root."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ----------------------------------------------------------------------------- timing
def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between the two nearest values."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def timed(function: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    return interleaved([function], repeats, warmup)[0]


def interleaved(functions: list[Callable[[], Any]], repeats: int, warmup: int) -> list[list[float]]:
    """Time the functions in turn, so that load from other jobs falls on all of them alike."""
    for _ in range(warmup):
        for function in functions:
            function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- results files
def load_results(path: Path) -> dict[str, Any]:
    """A results JSON file, or an empty one (no rows) where it does not exist yet."""

    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {"rows": []}


def mean_cell(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """A table cell for a ``{"mean", "ci95_half_width"}`` summary: ``mean ± half-width``, the mean alone
    without an interval (one seed), and "—" without a summary."""
    if not stat:
        return "—"
    half = stat.get("ci95_half_width")
    return f"{stat['mean']:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")


def write_results(output: Path, result: dict[str, Any], markdown: str) -> None:
    """``output`` with ``.json`` (indented) and ``.md``, each written atomically: a killed run leaves the old files."""
    from hf_seqrec.io_utils import write_json_atomic, write_text_atomic

    write_json_atomic(output.with_suffix(".json"), result)
    write_text_atomic(output.with_suffix(".md"), markdown)


# ----------------------------------------------------------------------------- quality by target popularity
# Test targets grouped by how often they occur in the training split: where a model wins or loses the long tail.
POPULARITY_BUCKETS = (("≥ 100", 100, None), ("20–99", 20, 100), ("< 20", 0, 20))
_TARGET_COUNTS: dict[str, int] = {}


def target_train_counts() -> dict[str, int]:
    """Test user id -> how often that user's test target occurs in the training split (MovieLens-100K, the default data).

    The same for every model: every run splits the built-in data the same way. Read once through hf_seqrec's own
    data preparation (imports torch), so a report without per-run counts can still be broken down.
    """
    if not _TARGET_COUNTS:
        from hf_seqrec.data.prepare import DataConfig, prepare_data
        from hf_seqrec.modeling.popularity_counts import item_popularity

        prepared = prepare_data(DataConfig())
        splits = prepared.splits
        counts = item_popularity(splits["train"]["items"], len(prepared.catalog))
        _TARGET_COUNTS.update({str(user): int(counts[target]) for user, target in zip(splits["test"]["user_id"], splits["test"]["target"])})
    return _TARGET_COUNTS


def ndcg_by_target_popularity(user_ids: list[str], ranks: list[int]) -> dict[str, dict[str, float]]:
    """Test NDCG@10 per popularity bucket of the test target: ``{bucket: {"n_users", "ndcg@10"}}``."""
    counts = target_train_counts()
    result = {}
    for name, low, high in POPULARITY_BUCKETS:
        gains = [
            (1.0 / math.log2(rank + 1.0) if rank <= 10 else 0.0)
            for user, rank in zip(user_ids, ranks)
            if counts[str(user)] >= low and (high is None or counts[str(user)] < high)
        ]
        result[name] = {"n_users": len(gains), "ndcg@10": sum(gains) / len(gains) if gains else float("nan")}
    return result


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(first, second).statistic)


def user_bootstrap(differences: Any, users: Sequence[Any], n_resamples: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap of the mean per-user difference, resampling users rather than pairs.

    A user pooled over several seeds has one pair per seed; those pairs are not independent, so each
    resample draws users and takes all of a drawn user's pairs. Gives the number of users, the 95%
    percentile interval of the mean difference and a two-sided p-value (how often a resampled mean lies
    as far from the observed one as 0 does).
    """
    differences = np.asarray(differences, dtype=np.float64)
    mean = float(differences.mean())
    codes, user_index = np.unique(np.asarray(users), return_inverse=True)
    sums = np.bincount(user_index, weights=differences, minlength=len(codes))
    counts = np.bincount(user_index, minlength=len(codes)).astype(np.float64)
    rng = np.random.default_rng(seed)
    resampled = []
    for start in range(0, n_resamples, 1000):  # in blocks: a (n_resamples x users) index array at once is large
        picks = rng.integers(0, len(codes), size=(min(1000, n_resamples - start), len(codes)))
        resampled.append(sums[picks].sum(axis=1) / counts[picks].sum(axis=1))
    boot = np.concatenate(resampled)
    as_far = int(np.sum(np.abs(boot - mean) >= abs(mean) - 1e-15))
    return {
        "n_users": len(codes),
        "n_resamples": n_resamples,
        "seed": seed,
        "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "p_value": (1 + as_far) / (n_resamples + 1),
    }


def json_text(value: Any, indent: int = 0) -> str:
    """Indented JSON with each list of plain values on one line (a row's per-user ranks stay one line)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {json_text(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(f"{inner}{json_text(v, indent + 2)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)
