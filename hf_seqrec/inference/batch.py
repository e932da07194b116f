"""Batch recommendations: the top-k items for every user of a data set, written as one Parquet file.

    accelerate launch scripts/recommend.py --model runs/smollm2-ml100k --dataset movielens-100k \\
        --output recs.parquet --top_k 100 --precision int8

The output has one row per user and rank: ``user`` (string), ``item`` (string), ``score`` (float32,
the model's logit) and ``rank`` (int32, from 1). Each user's whole history is read as
``scripts/finetune.py`` reads its data (same loading code, column options and filters), in time
order; the items are ranked by ``pipeline("next-item")`` itself, so a row of the output is what the
pipeline returns for that user (items of the history are excluded unless ``exclude_seen=False``).

Fault tolerance. The users are cut into shards of ``shard_size`` users (in order of first appearance
in the data), the processes of an ``accelerate launch`` take every N-th shard, and each shard is
written atomically (temporary file, then rename) to ``<output>.shards/``, next to a ``manifest.json``
of the job's arguments. A killed job run again with the same arguments skips the shards already
written; with other arguments (or other data, or another checkpoint) it refuses and names what
differs, unless ``overwrite=True``. Once every shard exists the main process concatenates them into
``output`` (atomically, with the arguments in the file's Parquet metadata under ``hf_seqrec``) and
deletes the shards. A finished output is never recomputed for the same arguments, and an existing
output made with other arguments (or not by this job) is only replaced with ``overwrite=True``.

With ``precision="int8"`` activations are quantized per forward pass, so a user's scores depend
slightly on the other histories of the batch: the shards, and therefore the output, are still
reproducible for the same arguments (``batch_size`` is one of them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env
from tqdm.auto import tqdm

from ..data.errors import DataValidationError
from ..data.prepare import DataConfig, load_user_histories
from ..io_utils import atomic_path, write_json_atomic
from ..modeling.checkpoint_location import checkpoint_revision
from ..modeling.precision import PRECISIONS, check_precision
from ..option_checks import check_positive_int
from ..training.output_dir import OutputDirError
from .loading import checkpoint_dir, load_pipeline

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
METADATA_KEY = b"hf_seqrec"
FORMAT = "hf_seqrec batch recommendations v1"
SCHEMA = pa.schema([("user", pa.string()), ("item", pa.string()), ("score", pa.float32()), ("rank", pa.int32())])
FALLBACKS = ("none", "popular")


@dataclass
class BatchRecommendConfig:
    """The arguments of a batch job. Everything that changes the output is part of the job's identity.

    Args:
        model: checkpoint directory or Hub id.
        output: the Parquet file to write; shards go to ``<output>.shards/`` meanwhile.
        data: where the interactions come from and how they are read (the fields of ``DataConfig``;
            ``items`` is not used: the catalogue is the checkpoint's).
        top_k: items per user (fewer when fewer are left after excluding the history).
        precision: ``None`` (the checkpoint as saved, fp32) or one of ``"fp32"``, ``"bf16"``, ``"int8"``.
        batch_size: histories per forward pass.
        shard_size: users per shard, the unit of resumption.
        exclude_seen: never recommend an item of the user's history (the pipeline's default).
        fallback: ``"none"`` leaves out users none of whose items is in the catalogue (counted in the
            summary); ``"popular"`` gives them the most popular items (needs ``item_popularity.json``).
        overwrite: replace an output, or the shards of an unfinished job, made with other arguments.
    """

    model: str
    output: str
    data: DataConfig = field(default_factory=DataConfig)
    top_k: int = 100
    precision: str | None = None
    batch_size: int = 64
    shard_size: int = 1000
    exclude_seen: bool = True
    fallback: str = "none"
    overwrite: bool = False

    def __post_init__(self) -> None:
        for name in ("top_k", "batch_size", "shard_size"):
            check_positive_int(name, getattr(self, name))
        if self.precision is not None:
            check_precision(self.precision)
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}; got {self.fallback!r}")
        if not isinstance(self.exclude_seen, bool):
            raise ValueError(f"exclude_seen must be True or False; got {self.exclude_seen!r}")

    @property
    def shards_dir(self) -> Path:
        output = Path(self.output)
        return output.with_name(output.name + ".shards")

    def identity(self) -> dict[str, Any]:
        """The arguments that decide the output (not ``overwrite``, nor the number of processes)."""
        data = asdict(self.data)
        data.pop("items", None)
        if not self.data.is_builtin:
            data["dataset"] = str(Path(self.data.dataset).resolve())
        model = Path(self.model).expanduser()
        return {
            "model": str(model.resolve()) if model.exists() else self.model,
            "data": data,
            "top_k": self.top_k,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "shard_size": self.shard_size,
            "exclude_seen": self.exclude_seen,
            "fallback": self.fallback,
        }


def recommend_to_parquet(
    config: BatchRecommendConfig,
    *,
    progress: bool = True,
    on_shard_written: Callable[[int, Path], None] | None = None,
) -> dict[str, Any]:
    """Run the batch job of ``config`` on this process (one of an ``accelerate launch`` or alone).

    Every process loads the data and the model and writes its own shards; the main process then
    writes ``config.output``. Returns a summary (users, shards written and reused, seconds,
    users/s); every process returns it, the main process's covers the whole job.
    ``on_shard_written(shard_index, path)`` is called after each shard this process writes.
    """
    state = process_state()
    started = time.perf_counter()
    histories, data_report = load_user_histories(config.data)
    users = list(histories)
    if not users:
        raise ValueError(f"{config.data.dataset}: no users to recommend for")
    # The Hub commit, or a digest of the files that decide the output: a retrained checkpoint in the same directory is noticed.
    directory = checkpoint_dir(config.model)
    identity = {**config.identity(), "checkpoint_revision": checkpoint_revision(directory)[0], "users": _users_digest(histories)}
    n_shards = -(-len(users) // config.shard_size)

    # Every process decides from the same files before anyone writes, so all of them agree (or all raise).
    action = _plan(config, identity)
    if action == "done":
        logger.info("%s is complete for these arguments; nothing to do", config.output)
        return {"output": str(config.output), "n_users": len(users), "n_shards": n_shards, "complete": True, "already_complete": True}
    recommend = load_pipeline(directory, precision=config.precision, device=state.device)
    coverage = _coverage(recommend.catalog, histories, config)
    state.wait_for_everyone()
    shards_dir = config.shards_dir
    if state.is_main_process:
        if action == "restart" and shards_dir.exists():
            shutil.rmtree(shards_dir)
        shards_dir.mkdir(parents=True, exist_ok=True)
        if action != "resume":
            write_json_atomic(shards_dir / MANIFEST, {"format": FORMAT, "n_shards": n_shards, "arguments": identity})
    state.wait_for_everyone()

    mine = list(range(state.process_index, n_shards, state.num_processes))
    todo = [index for index in mine if not _shard_path(shards_dir, index, n_shards).exists()]
    todo_users = sum(len(_shard_users(users, index, config.shard_size)) for index in todo)
    bar = _progress_bar(todo_users, state, enabled=progress)
    work_started = time.perf_counter()
    for index in todo:
        shard_users = _shard_users(users, index, config.shard_size)
        table = _recommend_shard(recommend, config, shard_users, histories)
        path = _shard_path(shards_dir, index, n_shards)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        if on_shard_written is not None:
            on_shard_written(index, path)
        if bar is not None:
            bar.update(len(shard_users))
    if bar is not None:
        bar.close()
    state.wait_for_everyone()
    work_seconds = time.perf_counter() - work_started

    summary = {
        "output": str(config.output),
        "n_users": len(users),
        **coverage,
        "n_shards": n_shards,
        "num_processes": state.num_processes,
        "shards_written_by_this_process": len(todo),
        "shards_reused_by_this_process": len(mine) - len(todo),
        "users_computed_by_this_process": todo_users,
        "data": data_report,
        "seconds_recommending": round(work_seconds, 3),
        "complete": False,
    }
    if state.is_main_process:
        missing = [i for i in range(n_shards) if not _shard_path(shards_dir, i, n_shards).exists()]
        if missing:
            raise RuntimeError(f"{shards_dir}: shards {missing[:10]} are missing after every process finished")
        _concatenate(shards_dir, n_shards, Path(config.output), identity)
        shutil.rmtree(shards_dir)
        summary["complete"] = True
    summary["seconds_total"] = round(time.perf_counter() - started, 3)
    return summary


def _coverage(catalog: Any, histories: dict[str, list[str]], config: BatchRecommendConfig) -> dict[str, int]:
    """How many users get recommendations, and how many history items the checkpoint does not know.

    None of the data's items in the catalogue almost always means the wrong item column or another
    data set than the model's: that is an error, not an empty output.
    """
    unknown = users_without = 0
    total = sum(len(items) for items in histories.values())
    for items in histories.values():
        rows, missing = catalog.rows_for_ids(items)
        unknown += len(missing)
        users_without += not rows
    if total and unknown == total:
        raise DataValidationError(
            "none of the item ids of the interactions is in the checkpoint's item catalogue",
            source=str(config.data.dataset), field=config.data.item_column,
            found=f"ids like {next(iter(histories.values()))[:5]}",
            expected=f"ids of the checkpoint's catalogue, like {list(catalog.item_ids[:5])}",
            hint="Check --item_column, and that the data is the one the model was trained on",
        )
    skipped = users_without if config.fallback == "none" else 0
    return {
        "n_users_recommended": len(histories) - skipped,
        "n_users_skipped_no_known_item": skipped,
        "n_history_items_not_in_catalogue": unknown,
    }


def process_state() -> PartialState:
    """accelerate's view of the processes; the CPU ones too (``ACCELERATE_USE_CPU=1``, or no GPU at all).

    ``PartialState()`` alone ignores ``ACCELERATE_USE_CPU`` (only ``Accelerator`` reads it) and would
    leave every process of a CPU launch believing it is alone.
    """
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


# ----------------------------------------------------------------------------- resuming and refusing
def _plan(config: BatchRecommendConfig, identity: dict[str, Any]) -> str:
    """What to do with what exists: "done", "resume" (same job's shards), "start" or "restart" (other shards dropped)."""
    output = Path(config.output)
    if output.exists():
        written = _output_identity(output)
        if written == identity:
            return "done"
        if not config.overwrite:
            if written is None:
                raise OutputDirError(
                    f"{output} exists and was not written by an hf_seqrec batch job; pass --overwrite to replace it"
                )
            raise OutputDirError(
                f"{output} exists and was written with other arguments ({_differences(written, identity)}); "
                "pass --overwrite to replace it, or choose another --output"
            )
    manifest_path = config.shards_dir / MANIFEST
    if not manifest_path.is_file():
        return "restart" if config.shards_dir.exists() else "start"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        previous = manifest["arguments"]
    except (ValueError, KeyError, TypeError):
        previous = None
    if previous == identity:
        return "resume"
    if not config.overwrite:
        what = _differences(previous, identity) if isinstance(previous, dict) else "its manifest is unreadable"
        raise OutputDirError(
            f"{config.shards_dir} holds an unfinished job with other arguments ({what}); run it again with its own "
            "arguments to finish it, or pass --overwrite to discard its shards"
        )
    return "restart"


def _output_identity(path: Path) -> dict[str, Any] | None:
    """The arguments stored in an output's Parquet metadata; None for a file this job did not write."""
    try:
        metadata = pq.read_schema(path).metadata or {}
        record = json.loads(metadata[METADATA_KEY])
        return record["arguments"] if record.get("format") == FORMAT else None
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None


def _differences(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> str:
    """"top_k: 50 then, 100 now; data.user_column: ..." for every argument that differs."""
    parts = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if key == "checkpoint_revision":
            parts.append(f"{prefix}{key}: the checkpoint's files changed ({old} then, {new} now)")
        elif key == "users":
            then = old.get("n_users") if isinstance(old, dict) else "?"
            parts.append(f"{prefix}users: the interactions changed ({then} users then, {new['n_users']} now)")
        elif isinstance(old, dict) and isinstance(new, dict):
            parts.append(_differences(old, new, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}: {old!r} then, {new!r} now")
    return "; ".join(parts)


def _users_digest(histories: dict[str, list[str]]) -> dict[str, Any]:
    """The number of users and a sha256 of every user's history: other data must not extend a job's shards."""
    digest = hashlib.sha256()
    for user, items in histories.items():
        digest.update(json.dumps([user, items]).encode())
    return {"n_users": len(histories), "sha256": digest.hexdigest()}


# ----------------------------------------------------------------------------- recommending
def _recommend_shard(recommend: Any, config: BatchRecommendConfig, users: list[str], histories: dict[str, list[str]]) -> pa.Table:
    """The output rows of one shard's users, in shard order and rank order."""
    from ..pipelines import UnknownItemWarning

    known, inputs = [], []
    for user in users:
        rows, _ = recommend.catalog.rows_for_ids(histories[user])
        if rows or config.fallback == "popular":
            known.append(user)
            inputs.append({"history": histories[user]})
    # Histories of similar length share a batch (less padding); the rows go back to shard order below.
    order = sorted(range(len(inputs)), key=lambda i: min(len(histories[known[i]]), recommend.max_len))
    call = {"top_k": config.top_k, "exclude_seen": config.exclude_seen}
    if config.fallback == "popular":
        call["fallback"] = "popular"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownItemWarning)  # counted once for the job (_coverage), not per user
        results = recommend([inputs[i] for i in order], batch_size=config.batch_size, **call) if inputs else []
    by_position: list[list[dict]] = [[] for _ in inputs]
    for position, result in zip(order, results):
        by_position[position] = result
    columns: dict[str, list] = {"user": [], "item": [], "score": [], "rank": []}
    for user, result in zip(known, by_position):
        for row in result:
            columns["user"].append(user)
            columns["item"].append(row["item_id"])
            columns["score"].append(row["score"])
            columns["rank"].append(row["rank"])
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _shard_users(users: list[str], index: int, shard_size: int) -> list[str]:
    return users[index * shard_size : (index + 1) * shard_size]


def _shard_path(shards_dir: Path, index: int, n_shards: int) -> Path:
    return shards_dir / f"shard-{index:05d}-of-{n_shards:05d}.parquet"


def _concatenate(shards_dir: Path, n_shards: int, output: Path, identity: dict[str, Any]) -> None:
    """Write every shard, in order, into ``output`` atomically, with the job's arguments in its metadata."""
    schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps({"format": FORMAT, "arguments": identity}).encode()})
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for index in range(n_shards):
                writer.write_table(pq.read_table(_shard_path(shards_dir, index, n_shards)).cast(schema))


def _progress_bar(total: int, state: Any, *, enabled: bool):
    if not enabled or not state.is_main_process:
        return None
    label = "users" if state.num_processes == 1 else f"users (process 0 of {state.num_processes})"
    return tqdm(total=total, unit="user", desc=label, dynamic_ncols=True)


__all__ = ["BatchRecommendConfig", "FALLBACKS", "PRECISIONS", "SCHEMA", "recommend_to_parquet"]
