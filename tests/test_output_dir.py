"""The output directory: one run at a time, checked for writability up front, and cleared of only hf_seqrec's files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.entry_points import run_cli
from hf_seqrec.training.finetune_command import finetune_main
from hf_seqrec.publishing.model_card import write_model_card
from hf_seqrec.training.config import FinetuneConfig
from hf_seqrec.training.output_dir import LOCK_FILE, OutputDirError, check_output_dir, holds_output_dir_lock, release_output_dir
from hf_seqrec.training.popularity import fit_popularity
from hf_seqrec.training.trainer import train

REPO = Path(__file__).resolve().parents[1]

# Holds a run's lock on argv[1] the way every run takes it, until killed.
_HOLDER = """
import sys, time
from hf_seqrec.training.config import FinetuneConfig
from hf_seqrec.training.output_dir import check_output_dir
check_output_dir(FinetuneConfig(output_dir=sys.argv[1], overwrite_output_dir=True))
print("locked", flush=True)
time.sleep(600)
"""


def _interactions(directory: Path) -> str:
    """Six users with five timed interactions each over seven items: enough for a popularity run in a second."""
    rows = ["user_id,item_id,timestamp"] + [f"u{user},{(3 * user + k) % 7},{k}" for user in range(6) for k in range(5)]
    path = directory / "interactions.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def _popularity_config(directory: Path, output_dir: Path, **options) -> FinetuneConfig:
    return FinetuneConfig(
        backbone="popularity", dataset=_interactions(directory), output_dir=str(output_dir), report_to=None,
        bootstrap_samples=10, **options,
    )


@pytest.fixture
def held_directory(tmp_path):
    """An output directory locked by another process (a run in progress), and that process."""
    output_dir = tmp_path / "busy"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(output_dir)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield output_dir, holder
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------------------- one run at a time
@pytest.mark.parametrize("options", [{}, {"resume": True}, {"overwrite_output_dir": True}])
def test_a_second_run_into_a_directory_in_use_fails_at_once_naming_it_and_the_holder(held_directory, options):
    output_dir, holder = held_directory
    with pytest.raises(OutputDirError, match=rf"another hf_seqrec run \(pid {holder.pid} on .*\) is using this output directory") as caught:
        check_output_dir(FinetuneConfig(output_dir=str(output_dir), **options))
    assert str(output_dir) in str(caught.value)


def test_runs_of_every_kind_are_refused_before_loading_any_data(held_directory, tmp_path, capsys):
    """A dataset that does not exist: a run that got as far as loading data would fail on it instead."""
    output_dir, holder = held_directory
    missing = str(tmp_path / "absent.csv")
    for run in (fit_popularity, train):
        backbone = "popularity" if run is fit_popularity else "tiny-llama"
        with pytest.raises(OutputDirError, match=f"pid {holder.pid}"):
            run(FinetuneConfig(backbone=backbone, dataset=missing, output_dir=str(output_dir), overwrite_output_dir=True))
    assert run_cli(finetune_main, ["--backbone", "tiny-llama", "--dataset", missing, "--output_dir", str(output_dir)]) == 2
    assert f"pid {holder.pid}" in capsys.readouterr().err


def test_a_killed_run_leaves_no_lock_that_blocks_the_next(held_directory, tmp_path):
    output_dir, holder = held_directory
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (output_dir / LOCK_FILE).is_file()  # the file stays behind; the lock does not
    results = fit_popularity(_popularity_config(tmp_path, output_dir))
    assert results["test"]["n_users"] == 6


def test_a_finished_run_gives_the_directory_back(tmp_path):
    output_dir = tmp_path / "run"
    fit_popularity(_popularity_config(tmp_path, output_dir))
    assert not holds_output_dir_lock(output_dir) and not (output_dir / LOCK_FILE).exists()
    # The next run sees a finished run, not a run in progress.
    with pytest.raises(OutputDirError, match="not empty; pass --overwrite_output_dir"):
        check_output_dir(FinetuneConfig(output_dir=str(output_dir)))
    assert not (output_dir / LOCK_FILE).exists()  # a refused run gives the lock back too


# ----------------------------------------------------------------------------- writability, before any work
def test_an_output_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("mine", encoding="utf-8")
    args = ["--backbone", "tiny-llama", "--dataset", str(tmp_path / "absent.csv"), "--report_to", "none"]
    assert run_cli(finetune_main, [*args, "--output_dir", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {existing}: --output_dir names an existing file") and "Traceback" not in err
    assert existing.read_text(encoding="utf-8") == "mine"
    assert run_cli(finetune_main, [*args, "--output_dir", str(existing / "run")]) == 2  # a file where a parent should be
    assert f"error: {existing / 'run'}: cannot create the output directory" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_an_unwritable_output_dir_or_parent_is_refused_before_any_work(tmp_path, capsys):
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        args = ["--backbone", "tiny-llama", "--dataset", str(tmp_path / "absent.csv"), "--report_to", "none"]
        assert run_cli(finetune_main, [*args, "--output_dir", str(locked)]) == 2
        assert f"error: {locked}: the output directory is not writable" in capsys.readouterr().err
        assert run_cli(finetune_main, [*args, "--output_dir", str(locked / "run")]) == 2
        assert f"error: {locked / 'run'}: cannot create the output directory" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------- --overwrite_output_dir
def _previous_lm_run(output_dir: Path, catalog) -> set[str]:
    """What an LM run leaves at the top of its directory; returns the file names."""
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12)
    model.item_catalog = catalog
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    metrics = {"test": {"ndcg@10": 0.1}, "training": {"backbone": "tiny-llama", "history": []}}
    (output_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (output_dir / "training_config.yaml").write_text("backbone: tiny-llama\n", encoding="utf-8")
    write_model_card(output_dir, metrics, {"backbone": "tiny-llama", "dataset": "movielens-100k"})
    for name in ("checkpoints/last", "best", "logs"):
        (output_dir / name).mkdir(parents=True)
    return {path.name for path in output_dir.iterdir()}


def test_overwrite_removes_every_file_of_the_previous_run_and_nothing_of_the_users(tmp_path, catalog):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    previous = _previous_lm_run(output_dir, catalog)
    assert {"adapter_model.safetensors", "tokenizer.json", "config.json", "README.md", "modeling_seqrec.py"} <= previous
    (output_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    (output_dir / "my_data").mkdir()
    (output_dir / "my_data" / "metrics.json").write_text("{}", encoding="utf-8")  # not at the top: not the run's

    fit_popularity(_popularity_config(tmp_path, output_dir, overwrite_output_dir=True))

    left = {path.name for path in output_dir.iterdir()}
    popularity_run = {"item_catalog.jsonl", "item_popularity.json", "metrics.json", "training_config.yaml", "test_ranks.json"}
    assert left - popularity_run == {"notes.txt", "my_data"}
    assert (output_dir / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (output_dir / "my_data" / "metrics.json").is_file()
    assert json.loads((output_dir / "metrics.json").read_text())["training"]["backbone"] == "popularity"


def test_overwrite_keeps_a_readme_and_config_json_that_are_not_hf_seqrecs(tmp_path):
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "README.md").write_text("---\nlibrary_name: transformers\n---\n# My notes\n", encoding="utf-8")
    (output_dir / "config.json").write_text(json.dumps({"model_type": "llama"}), encoding="utf-8")
    (output_dir / "adapter_model.safetensors").write_bytes(b"stale")
    fit_popularity(_popularity_config(tmp_path, output_dir, overwrite_output_dir=True))
    assert (output_dir / "README.md").read_text(encoding="utf-8").endswith("# My notes\n")
    assert json.loads((output_dir / "config.json").read_text()) == {"model_type": "llama"}
    assert not (output_dir / "adapter_model.safetensors").exists()


@pytest.fixture(autouse=True)
def _no_lock_left_held(tmp_path):
    """check_output_dir called directly keeps its lock for the process; give the test's directories back."""
    yield
    for path in [tmp_path, *tmp_path.iterdir()] if tmp_path.exists() else []:
        release_output_dir(path)
