"""End-to-end fine-tuning on the tiny backbone: outputs, reloading, determinism, 2 processes, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.data.prepare import prepare_data
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from hf_seqrec.training.output_dir import OutputDirError, check_output_dir
from hf_seqrec.training.popularity import fit_popularity
from testing_utils import run_finetune, script_env

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config", str(REPO / "configs" / "tiny.yaml"),
    "--max_steps", "24",
    "--checkpoint_every_steps", "6",
    "--eval_max_users", "120",
    "--bootstrap_samples", "50",
    "--report_to", "none",
]


def _finetune(output_dir: Path, *extra: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    return run_finetune(*TINY, "--output_dir", str(output_dir), *extra, launcher=launcher)


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / "metrics.json").read_text())


def _scores(metrics: dict) -> dict:
    """The parts of metrics.json that must not depend on timing."""
    history = [{k: v for k, v in epoch.items()} for epoch in metrics["training"]["history"]]
    return {"validation": metrics["validation"], "test": metrics["test"], "history": history}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("runs") / "reference"
    result = _finetune(output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


def test_run_writes_a_reloadable_checkpoint_and_full_metrics(reference_run):
    files = {p.name for p in reference_run.iterdir()}
    assert {"config.json", "adapter_model.safetensors", "item_table.safetensors", "item_catalog.jsonl",
            "tokenizer.json", "metrics.json", "training_config.yaml", "README.md"} <= files
    metrics = _metrics(reference_run)
    for split in ("validation", "test"):
        for key in ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@1", "ndcg@5", "ndcg@10", "ndcg@20", "mrr"):
            assert 0.0 <= metrics[split][key] <= 1.0
            low, high = metrics[split]["intervals"][key]
            assert low <= metrics[split][key] <= high
    assert metrics["test"]["n_users"] == 120 and metrics["n_items"] == 1682
    assert metrics["protocol"]["masking"].startswith("items in the user's input history are masked")
    assert metrics["training"]["optimizer_steps"] == 24
    # The card shows one real explanation of this model: the first test user's top recommendation.
    card = (reference_run / "README.md").read_text()
    example = card.split("For example, test user `", 1)[1]
    assert "as the top recommendation" in example and example.count("\n- ") >= 3


def test_evaluate_script_reproduces_the_saved_test_metrics(reference_run, tmp_path):
    output = tmp_path / "eval.json"
    command = [sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(reference_run),
               "--max_users", "120", "--bootstrap_samples", "50", "--output", str(output)]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated, saved = json.loads(output.read_text()), _metrics(reference_run)
    assert evaluated["test"] == saved["test"]
    # The same counts and protocol as metrics.json: n_users is every user of the data, n_users_evaluated those scored.
    counts = ("n_users", "n_users_evaluated", "n_users_too_short", "n_items")
    assert [evaluated[key] for key in counts] == [saved[key] for key in counts] == [943, 120, 0, 1682]
    assert evaluated["protocol"].pop("subset").startswith("first 120 users only (max_users)")
    assert saved["protocol"].pop("subset").startswith("first 120 users only (eval_max_users)")
    assert evaluated["protocol"] == saved["protocol"]


def test_evaluate_script_scores_a_bf16_run_under_its_own_precision(tmp_path):
    """The trainer's final test runs under the run's autocast; evaluate_checkpoint.py must score the checkpoint the same way."""
    run = tmp_path / "bf16"
    result = _finetune(run, "--mixed_precision", "bf16", "--max_steps", "6", "--checkpoint_every_steps", "0")
    assert result.returncode == 0, result.stderr[-3000:]

    def evaluate(*extra: str) -> dict:
        output = tmp_path / f"eval{len(extra)}.json"
        command = [sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(run), "--max_users", "120",
                   "--bootstrap_samples", "50", "--output", str(output), *extra]
        done = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(output.read_text())["test"]

    assert evaluate() == _metrics(run)["test"]  # the precision comes from the run's training_config.yaml
    assert evaluate("--mixed_precision", "no") != _metrics(run)["test"]  # fp32 ranks differently: the setting matters


def test_same_seed_gives_identical_metrics(reference_run, tmp_path):
    again = tmp_path / "again"
    result = _finetune(again)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _scores(_metrics(again)) == _scores(_metrics(reference_run))
    assert (again / "adapter_model.safetensors").read_bytes() == (reference_run / "adapter_model.safetensors").read_bytes()


def test_two_cpu_processes_give_the_same_metrics_as_one(reference_run, tmp_path):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533"]
    output_dir = tmp_path / "two"
    env_result = subprocess.run(
        launcher + [str(REPO / "scripts" / "finetune.py"), *TINY, "--output_dir", str(output_dir)],
        cwd=REPO, env=dict(script_env(), ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=600,
    )
    assert env_result.returncode == 0, env_result.stderr[-3000:]
    two, one = _metrics(output_dir), _metrics(reference_run)
    assert two["training"]["num_processes"] == 2
    assert two["test"] == one["test"] and two["validation"] == one["validation"]


def _kill_mid_epoch_then_resume(output_dir: Path, *extra: str) -> None:
    """SIGKILL a run once it has saved a mid-epoch checkpoint, check it refuses a plain rerun, then --resume it."""
    command = [sys.executable, str(REPO / "scripts" / "finetune.py"), *TINY, "--output_dir", str(output_dir), *extra]
    process = subprocess.Popen(command, cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = output_dir / "checkpoints" / "last" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text())["global_step"] >= 6:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state_file.read_text())
    assert 0 < killed_at["global_step"] < 24 and killed_at["step_in_epoch"] > 0  # mid-epoch
    assert not (output_dir / "metrics.json").exists()

    refused = _finetune(output_dir, *extra)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = _finetune(output_dir, *extra, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_killed_run_resumes_to_the_same_result(reference_run, tmp_path):
    """The tiny config batches by length (as the CPU default does): the grouped order must survive the kill."""
    output_dir = tmp_path / "killed"
    _kill_mid_epoch_then_resume(output_dir)
    assert _scores(_metrics(output_dir)) == _scores(_metrics(reference_run))


def test_killed_run_with_plain_shuffle_resumes_to_the_same_result(reference_run, tmp_path):
    uninterrupted = tmp_path / "plain"
    assert _finetune(uninterrupted, "--no-group_by_length").returncode == 0
    killed = tmp_path / "plain-killed"
    _kill_mid_epoch_then_resume(killed, "--no-group_by_length")
    assert _scores(_metrics(killed)) == _scores(_metrics(uninterrupted))
    assert _scores(_metrics(uninterrupted)) != _scores(_metrics(reference_run))  # a different batch order really ran


def test_reloaded_checkpoint_scores_like_the_trained_one(reference_run):
    model = SeqRecForNextItem.from_pretrained(reference_run)
    best = SeqRecForNextItem.from_pretrained(reference_run / "best")
    items = torch.tensor([[0, 5, 9, 100, 7]])
    assert torch.equal(model(items).logits, best(items).logits)
    assert len(model.item_catalog) == 1682


def test_existing_output_dir_is_protected(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="overwrite_output_dir"):
        check_output_dir(FinetuneConfig(output_dir=str(tmp_path)))
    with pytest.raises(OutputDirError, match="no saved training state"):
        check_output_dir(FinetuneConfig(output_dir=str(tmp_path), resume=True))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_training_config_records_that_a_file_without_timestamps_was_read_in_file_order(tmp_path):
    data = tmp_path / "no_time.csv"
    data.write_text("user_id,item_id\n" + "".join(f"u{user},{(3 * user + k) % 7}\n" for user in range(6) for k in range(5)))
    config = FinetuneConfig(backbone="popularity", dataset=str(data), output_dir=str(tmp_path / "run"), report_to=None, bootstrap_samples=10)
    assert config.timestamp_column == "auto"
    with pytest.warns(UserWarning, match=r"no_time\.csv has no 'timestamp' column.*--timestamp_column none"):
        fit_popularity(config)
    saved = FinetuneConfig.from_yaml(tmp_path / "run" / "training_config.yaml")
    assert saved.timestamp_column is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # evaluate_checkpoint.py reads the data the same way, without the notice
        prepare_data(saved.data_config())


def test_yaml_config_errors_name_the_key_and_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rat: 0.001\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown option 'learning_rat'; did you mean 'learning_rate'"):
        FinetuneConfig.from_yaml(config)
    config.write_text("num_epochs: three\n")
    with pytest.raises(ConfigError, match="run.yaml: num_epochs: expected an integer, got 'three'"):
        FinetuneConfig.from_yaml(config)
    config.write_text("use_lora: maybe\n")
    with pytest.raises(ConfigError, match="use_lora: expected true or false"):
        FinetuneConfig.from_yaml(config)


def test_killed_run_with_varied_windows_resumes_to_the_same_result(tmp_path):
    """Windows cut anew every epoch are a function of (seed, epoch): a resumed run rebuilds the killed run's windows."""
    uninterrupted = tmp_path / "varied"
    assert _finetune(uninterrupted, "--vary_windows").returncode == 0
    killed = tmp_path / "varied-killed"
    _kill_mid_epoch_then_resume(killed, "--vary_windows")
    assert _scores(_metrics(killed)) == _scores(_metrics(uninterrupted))
