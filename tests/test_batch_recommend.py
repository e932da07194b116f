"""scripts/recommend.py and hf_seqrec.inference.batch: every user's top-k as Parquet, resumable, on 1 or 2 processes."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from transformers import pipeline

from hf_seqrec.entry_points import run_cli
from hf_seqrec.data.prepare import DataConfig
from hf_seqrec.inference import BatchRecommendConfig, recommend_to_parquet
from hf_seqrec.inference.recommend_command import recommend_main
from hf_seqrec.training.output_dir import OutputDirError
from testing_utils import REPO, numbered_catalog, save_tiny_lm_checkpoint, script_env

N_ITEMS = 30
TOP_K = 5
SHARD_SIZE = 4
N_USERS = 14  # 4 shards: 4 + 4 + 4 + 2 users


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_lm_checkpoint(tmp_path_factory.mktemp("checkpoint"), numbered_catalog(N_ITEMS, first_year=1960), max_len=6)


@pytest.fixture(scope="module")
def interactions(tmp_path_factory):
    """Rows out of time order, histories longer than max_len, unknown items, and one user with only unknown items."""
    rng = random.Random(0)
    rows = []
    for user in range(N_USERS - 1):
        for _ in range(rng.randint(1, 10)):
            rows.append([f"u{user}", str(rng.randint(1, N_ITEMS + 3)), rng.randint(0, 1000)])  # 31..33: not in the catalogue
    rows += [[f"u{N_USERS - 1}", "99", 5], [f"u{N_USERS - 1}", "98", 6]]
    rng.shuffle(rows)
    path = tmp_path_factory.mktemp("data") / "clicks.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "sku", "ts"])
        writer.writerows(rows)
    return path


def _config(checkpoint, interactions, output, **overrides) -> BatchRecommendConfig:
    data = DataConfig(dataset=str(interactions), user_column="customer", item_column="sku", timestamp_column="ts")
    values = {"top_k": TOP_K, "shard_size": SHARD_SIZE, "batch_size": 3, **overrides}
    return BatchRecommendConfig(model=str(checkpoint), output=str(output), data=data, **values)


def _histories(interactions) -> dict[str, list[str]]:
    """Each user's items in time order (ties in file order), read independently of hf_seqrec."""
    frame = pd.read_csv(interactions, dtype=str)
    frame["ts"] = frame["ts"].astype(int)
    frame = frame.sort_values("ts", kind="stable")
    return {user: list(group["sku"]) for user, group in frame.groupby("customer", sort=False)}


@pytest.fixture(scope="module")
def uninterrupted(checkpoint, interactions, tmp_path_factory):
    output = tmp_path_factory.mktemp("full") / "recs.parquet"
    summary = recommend_to_parquet(_config(checkpoint, interactions, output), progress=False)
    return output, summary


def test_rows_columns_and_ranks_match_the_pipeline(uninterrupted, checkpoint, interactions):
    output, summary = uninterrupted
    table = pq.read_table(output)
    assert table.schema.names == ["user", "item", "score", "rank"]
    assert [str(t) for t in table.schema.types] == ["string", "string", "float", "int32"]
    frame = table.to_pandas()
    histories = _histories(interactions)
    known = {str(i) for i in range(1, N_ITEMS + 1)}
    skipped = [user for user, items in histories.items() if not set(items) & known]
    assert skipped == [f"u{N_USERS - 1}"]
    assert summary["complete"] and summary["n_users"] == N_USERS and summary["n_users_skipped_no_known_item"] == 1
    assert summary["n_history_items_not_in_catalogue"] == sum(i not in known for items in histories.values() for i in items)
    # Users in order of first appearance in the file, each with ranks 1..k and no item of their history.
    first_seen = list(dict.fromkeys(pd.read_csv(interactions, dtype=str)["customer"]))
    assert list(dict.fromkeys(frame["user"])) == [u for u in first_seen if u not in skipped]
    for user, group in frame.groupby("user", sort=False):
        assert group["rank"].tolist() == list(range(1, TOP_K + 1))
        assert group["score"].is_monotonic_decreasing
        assert not set(group["item"]) & set(histories[user])
    recommend = pipeline("next-item", model=str(checkpoint))
    for user in ["u0", "u3", "u7", "u12"]:
        want = recommend({"history": histories[user]}, top_k=TOP_K)
        got = frame[frame["user"] == user]
        assert got["item"].tolist() == [r["item_id"] for r in want]
        assert got["score"].tolist() == pytest.approx([r["score"] for r in want], abs=1e-5)


def test_popular_fallback_and_keeping_seen_items(checkpoint, interactions, tmp_path):
    from hf_seqrec.pipelines import save_item_popularity

    local = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, local)
    save_item_popularity(local, [[4, 4, 4, 9, 9, 0]], num_items=N_ITEMS)
    output = tmp_path / "recs.parquet"
    recommend_to_parquet(_config(local, interactions, output, fallback="popular", exclude_seen=False), progress=False)
    frame = pd.read_parquet(output)
    cold = frame[frame["user"] == f"u{N_USERS - 1}"]
    assert cold["item"].tolist()[:3] == ["5", "10", "1"] and cold["score"].tolist()[:3] == [3.0, 2.0, 1.0]
    history = _histories(interactions)["u0"]
    want = pipeline("next-item", model=str(local))({"history": history}, top_k=TOP_K, exclude_seen=False)
    assert frame[frame["user"] == "u0"]["item"].tolist() == [r["item_id"] for r in want]


class Killed(Exception):
    pass


def test_a_killed_job_resumes_without_redoing_finished_shards(uninterrupted, checkpoint, interactions, tmp_path):
    output = tmp_path / "recs.parquet"
    config = _config(checkpoint, interactions, output)

    def die_after_first(index, path):
        raise Killed

    with pytest.raises(Killed):
        recommend_to_parquet(config, progress=False, on_shard_written=die_after_first)
    shards = config.shards_dir
    finished = sorted(shards.glob("shard-*.parquet"))
    assert [p.name for p in finished] == ["shard-00000-of-00004.parquet"] and not output.exists()
    first_mtime = finished[0].stat().st_mtime_ns
    # What a SIGKILL in the middle of writing leaves: a temporary file, never a torn shard under the final name.
    (shards / ".shard-00001-of-00004.parquet.abc123.tmp").write_bytes(b"torn")

    written, mtimes_seen = [], []

    def record(index, path):
        written.append(index)
        mtimes_seen.append(finished[0].stat().st_mtime_ns)  # shard 0 still exists while the others are written

    summary = recommend_to_parquet(config, progress=False, on_shard_written=record)
    assert written == [1, 2, 3] and set(mtimes_seen) == {first_mtime}
    assert summary["shards_reused_by_this_process"] == 1 and summary["complete"]
    assert not shards.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(uninterrupted[0]))
    # Run again with the same arguments: the output is complete, nothing is recomputed or rewritten.
    mtime = output.stat().st_mtime_ns
    assert recommend_to_parquet(config, progress=False, on_shard_written=record)["already_complete"]
    assert output.stat().st_mtime_ns == mtime and written == [1, 2, 3]


def test_changed_arguments_are_refused_naming_what_differs(checkpoint, interactions, tmp_path, capsys):
    output = tmp_path / "recs.parquet"
    config = _config(checkpoint, interactions, output)
    with pytest.raises(Killed):
        recommend_to_parquet(config, progress=False, on_shard_written=lambda index, path: (_ for _ in ()).throw(Killed()))
    argv = [
        "--model", str(checkpoint), "--dataset", str(interactions), "--output", str(output), "--user_column", "customer",
        "--item_column", "sku", "--timestamp_column", "ts", "--shard_size", str(SHARD_SIZE), "--batch_size", "3", "--no_progress",
    ]
    # Unfinished shards made with top_k=5: top_k=7 is refused with a one-line error, and the shards are kept.
    assert run_cli(recommend_main, argv + ["--top_k", "7"]) == 2
    error = capsys.readouterr().err
    assert "holds an unfinished job with other arguments (top_k: 5 then, 7 now)" in error and "--overwrite" in error
    assert (config.shards_dir / "shard-00000-of-00004.parquet").exists()
    # --overwrite discards them and runs the new job; the finished output is then protected the same way.
    assert run_cli(recommend_main, argv + ["--top_k", "7", "--overwrite"]) == 0
    assert pd.read_parquet(output).groupby("user").size().max() == 7
    assert run_cli(recommend_main, argv + ["--top_k", "7", "--precision", "int8"]) == 2
    assert "exists and was written with other arguments (precision: None then, 'int8' now)" in capsys.readouterr().err
    # A file this job did not write is never replaced silently.
    other = tmp_path / "mine.parquet"
    other.write_bytes(b"not a parquet file")
    argv_other = [a if a != str(output) else str(other) for a in argv]
    assert run_cli(recommend_main, argv_other) == 2
    assert "was not written by an hf_seqrec batch job" in capsys.readouterr().err
    assert other.read_bytes() == b"not a parquet file"


def test_other_data_under_the_same_arguments_is_refused(checkpoint, interactions, tmp_path):
    data = tmp_path / "clicks.csv"
    shutil.copy(interactions, data)
    output = tmp_path / "recs.parquet"
    recommend_to_parquet(_config(checkpoint, data, output), progress=False)
    with open(data, "a") as handle:
        handle.write("newcomer,3,2000\n")
    with pytest.raises(OutputDirError, match=r"users: the interactions changed \(14 users then, 15 now\)"):
        recommend_to_parquet(_config(checkpoint, data, output), progress=False)


@pytest.mark.parametrize("changed", ["item_popularity.json", "seqrec_adapter_config.json"])
def test_a_changed_checkpoint_file_is_refused_on_resume(changed, checkpoint, interactions, tmp_path):
    """Files other than the weights change the output too: the popularity counts (fallback="popular"), the adapter config."""
    from hf_seqrec.pipelines import save_item_popularity

    local = tmp_path / "checkpoint"
    shutil.copytree(checkpoint, local)
    save_item_popularity(local, [[4, 4, 4, 9, 9, 0]], num_items=N_ITEMS)
    output = tmp_path / "recs.parquet"
    config = _config(local, interactions, output, fallback="popular")
    with pytest.raises(Killed):
        recommend_to_parquet(config, progress=False, on_shard_written=lambda index, path: (_ for _ in ()).throw(Killed()))
    path = local / changed
    assert path.is_file()
    values = json.loads(path.read_text())
    if changed == "item_popularity.json":
        values["counts"] = values["counts"][::-1]
    else:
        values["lora_alpha"] = values["lora_alpha"] * 2
    path.write_text(json.dumps(values))
    with pytest.raises(OutputDirError, match=r"checkpoint_revision: the checkpoint's files changed") as refused:
        recommend_to_parquet(config, progress=False)
    assert "holds an unfinished job with other arguments" in str(refused.value)
    assert (config.shards_dir / "shard-00000-of-00004.parquet").exists()


def test_wrong_item_column_is_an_error_not_an_empty_output(checkpoint, interactions, tmp_path):
    from hf_seqrec.data.errors import DataValidationError

    data = DataConfig(dataset=str(interactions), user_column="sku", item_column="customer", timestamp_column="ts")  # swapped
    config = BatchRecommendConfig(model=str(checkpoint), output=str(tmp_path / "r.parquet"), data=data)
    with pytest.raises(DataValidationError, match="none of the item ids of the interactions is in the checkpoint's item catalogue"):
        recommend_to_parquet(config, progress=False)


def test_two_processes_split_the_shards_and_write_the_same_output(uninterrupted, checkpoint, interactions, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on the CPU (gloo): the same rows as one process."""
    output = tmp_path / "recs.parquet"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "scripts" / "recommend.py"),
        "--model", str(checkpoint), "--dataset", str(interactions), "--output", str(output), "--user_column", "customer",
        "--item_column", "sku", "--timestamp_column", "ts", "--top_k", str(TOP_K), "--shard_size", str(SHARD_SIZE),
        "--batch_size", "3", "--no_progress",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=script_env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["num_processes"] == 2 and summary["shards_written_by_this_process"] == 2  # shards 0 and 2
    got, want = pd.read_parquet(output), pd.read_parquet(uninterrupted[0])
    pd.testing.assert_frame_equal(got.drop(columns="score"), want.drop(columns="score"))
    assert got["score"].tolist() == pytest.approx(want["score"].tolist(), abs=1e-5)
