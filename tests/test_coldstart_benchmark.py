"""benchmarks/coldstart.py without training: every row's command is a valid finetune command on its config
file's full schedule, and the report (test and validation cold/warm tables) is built from finished runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from hf_seqrec.training.config import FinetuneConfig, config_from_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import coldstart  # noqa: E402


@pytest.mark.parametrize("model", list(coldstart.MODELS))
def test_every_row_trains_on_its_config_files_full_schedule_with_its_options(model, tmp_path):
    command = coldstart.model_command(model, 1, tmp_path / "run")
    config = config_from_args(command[2:])  # drop the interpreter and the script
    config_file, overrides = coldstart.MODELS[model]
    defaults = FinetuneConfig.from_yaml(REPO / config_file)
    # The schedule is the config file's own (the quality benchmark's), never cut short.
    assert "--num_epochs" not in command and "--max_steps" not in command
    for name in ("num_epochs", "early_stopping_patience", "lr_scheduler", "warmup_steps", "max_steps"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.cold_start_fraction == coldstart.COLD_FRACTION and config.seed == 1 and config.report_to is None
    for key, value in overrides.items():
        assert getattr(config, key) == value, key
    if config_file == "configs/cpu.yaml":
        assert config.item_embedding_dim is None  # the full-width table, with or without a tower


def test_the_let_it_go_rows_read_minilm_on_the_lm_and_on_sasrec(tmp_path):
    parsed = {model: config_from_args(coldstart.model_command(model, 0, tmp_path / model)[2:]) for model in coldstart.MODELS}
    lm_own, lm_minilm, sasrec = parsed["smollm2-lora-let-it-go"], parsed["smollm2-lora-let-it-go-minilm"], parsed["sasrec-let-it-go"]
    assert lm_own.item_text_design == lm_minilm.item_text_design == sasrec.item_text_design == "let-it-go"
    assert lm_own.item_text_encoder == "token-embeddings"
    assert lm_minilm.item_text_encoder == sasrec.item_text_encoder == "sentence-transformer:minilm"
    assert sasrec.backbone == "sasrec" and sasrec.item_text_tower and sasrec.item_text_init
    assert ("sasrec-let-it-go", "sasrec") in coldstart.TARGET_PAIRS


def _finished_run(run_dir: Path, seed: int, shift: float, validation: bool) -> None:
    """A run directory as scripts/finetune.py leaves it (the files the benchmark reads), with made-up metrics."""
    run_dir.mkdir(parents=True)

    def part(hr: float) -> dict:
        return {"hr@10": hr, "ndcg@10": hr / 2, "mrr": hr / 3}

    metrics = {
        "test": {"ndcg@10": 0.05 + shift, "hr@10": 0.1 + shift},
        "cold_start": {
            "n_cold_items": 168, "n_test_users_cold": 90, "n_test_users_warm": 853,
            "test_cold": part(0.02 + shift), "test_warm": part(0.1 + shift),
        },
        "training": {"epochs_run": 6, "best_epoch": 5, "train_seconds": 700.0},
    }
    if validation:
        metrics["cold_start_validation"] = {
            "n_validation_users_cold": 80, "n_validation_users_warm": 860,
            "validation_cold": part(0.03 + shift), "validation_warm": part(0.12 + shift),
        }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "training_config.yaml").write_text(yaml.safe_dump({"seed": seed}))


def test_the_report_splits_test_and_validation_targets_from_finished_runs(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    models = ("smollm2-lora", "smollm2-lora-let-it-go-minilm", "sasrec", "sasrec-let-it-go")
    for index, model in enumerate(models):
        for seed in (0, 1):
            # One older run without the validation split: its row has none, and the validation table skips it.
            _finished_run(runs / f"{model}-seed{seed}", seed, 0.001 * index + 0.002 * seed, validation=(model, seed) != ("sasrec", 1))
    argv = ["--models", ",".join(models), "--seeds", "0,1", "--runs_dir", str(runs), "--results_dir", str(results), "--reuse_finished"]
    assert coldstart.main(argv) == 0
    saved = json.loads((results / "coldstart.json").read_text())
    rows = {(row["model"], row["seed"]): row for row in saved["rows"]}
    assert rows[("sasrec-let-it-go", 1)]["val_cold_hr@10"] == pytest.approx(0.03 + 0.003 + 0.002)
    assert rows[("sasrec", 1)]["val_cold_hr@10"] is None
    assert "--num_epochs" not in rows[("sasrec-let-it-go", 0)]["command"]
    assert "sentence-transformer:minilm" in rows[("sasrec-let-it-go", 0)]["command"]
    summary = saved["summary"]["models"]
    assert summary["sasrec"]["n_validation_seeds"] == 1 and summary["sasrec-let-it-go"]["n_validation_seeds"] == 2
    report = (results / "coldstart.md").read_text()
    assert "## Validation split (for choosing a design)" in report
    validation_table = report.split("## Validation split", 1)[1].split("\n\n## ", 1)[0]
    assert "| sasrec-let-it-go | 2 | 0.0340 ± " in validation_table and "| sasrec | 1 | 0.0320 |" in validation_table
    assert "| 80 / 860 |" in validation_table
    assert "**sasrec-let-it-go warm NDCG@10 vs sasrec:" in report
    assert "Not run yet:" in report and "`smollm2-lora-let-it-go-minilm-centred` seeds 0, 1, 2" in report
    # The designs outside the default run are named as such, not as rows still to run.
    others = report.split("Other designs, run with `--models` and not part of the default run: ", 1)[1].split("\n", 1)[0]
    assert "`smollm2-lora-text-delta`" in others and "`smollm2-lora-let-it-go-minilm`" not in others
    assert "`smollm2-lora-text-delta` seeds" not in report


def test_the_default_run_holds_every_text_models_counterpart_without_a_tower():
    assert set(coldstart.DEFAULT_MODELS) <= set(coldstart.MODELS)
    for text_model, id_model in coldstart.TARGET_PAIRS:
        if text_model in coldstart.DEFAULT_MODELS:
            assert id_model in coldstart.DEFAULT_MODELS, text_model


def test_a_finished_run_is_reused_only_when_made_on_the_rows_configuration(tmp_path):
    """A run left from the one-epoch schedule of earlier versions is trained again, not read as a row."""
    current, one_epoch = tmp_path / "current", tmp_path / "one-epoch"
    _finished_run(current, 0, 0.0, validation=True)
    _finished_run(one_epoch, 0, 0.0, validation=True)
    (one_epoch / "training_config.yaml").write_text(yaml.safe_dump({"seed": 0, "num_epochs": 1}))
    assert coldstart.finished_run_matches(coldstart.model_command("sasrec-let-it-go", 0, current), current)
    assert not coldstart.finished_run_matches(coldstart.model_command("sasrec-let-it-go", 0, one_epoch), one_epoch)


def test_a_text_model_is_compared_with_its_counterpart_on_the_seeds_both_have(tmp_path):
    """Each seed holds out its own items: a mean over other seeds would compare other catalogues."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    for seed, shift in ((0, 0.05), (1, 0.05), (3, 0.0)):  # the no-tower model's seeds 0 and 1 score far higher
        _finished_run(runs / f"smollm2-lora-seed{seed}", seed, shift, validation=True)
    _finished_run(runs / "smollm2-lora-let-it-go-minilm-seed3", 3, 0.0, validation=True)
    common = ["--runs_dir", str(runs), "--results_dir", str(results), "--reuse_finished"]
    assert coldstart.main(["--models", "smollm2-lora", "--seeds", "0,1,3", *common]) == 0
    assert coldstart.main(["--models", "smollm2-lora-let-it-go-minilm", "--seeds", "3", *common]) == 0
    saved = json.loads((results / "coldstart.json").read_text())
    target = next(t for t in saved["summary"]["targets"] if t["text_model"] == "smollm2-lora-let-it-go-minilm")
    assert target["paired_seeds"] == [3] and target["warm_ndcg@10_change_vs_id_only"] == pytest.approx(0.0)
    assert "(the seeds both have: 3;" in (results / "coldstart.md").read_text()


def test_the_boosted_row_rescores_the_unboosted_run_instead_of_training(tmp_path, monkeypatch):
    """The boost is chosen after training, so the row is the same seed's finished run of the model without it, re-scored."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    model, base = "smollm2-lora-let-it-go-minilm-centred-iddrop-boost", "smollm2-lora-let-it-go-minilm-centred-iddrop"
    _finished_run(runs / f"{base}-seed3", 3, 0.0, validation=True)
    commands = []

    def rescore(command, log_path, label):  # what scripts/evaluate_checkpoint.py writes with --output
        commands.append(command)
        output = Path(command[command.index("--output") + 1])
        output.parent.mkdir(parents=True, exist_ok=True)
        sweep = [
            {"boost": boost, "cold_hr@10": 0.03 + boost / 10, "cold_ndcg@10": 0.01, "warm_hr@10": 0.2 - boost / 10, "warm_ndcg@10": 0.1}
            for boost in (0.0, 0.05, 0.1)
        ]
        choice = {"chosen": 0.1, "sweep": sweep, "n_validation_users_cold": 81, "n_validation_users_warm": 862}
        cold_start = {"test_cold": {"hr@10": 0.07, "ndcg@10": 0.03, "mrr": 0.02}, "test_warm": {"hr@10": 0.15, "ndcg@10": 0.08, "mrr": 0.07}}
        output.write_text(json.dumps({"test": {"ndcg@10": 0.075, "hr@10": 0.14}, "cold_start": cold_start, "new_item_boost": choice}))
        return 1.0

    monkeypatch.setattr(coldstart, "run_logged", rescore)
    monkeypatch.setattr(coldstart, "run_model", lambda *args: pytest.fail("the boosted row trained a model"))
    assert coldstart.main(["--models", base, "--seeds", "3", "--runs_dir", str(runs), "--results_dir", str(results), "--reuse_finished"]) == 0
    assert coldstart.main(["--models", model, "--seeds", "3", "--runs_dir", str(runs), "--results_dir", str(results)]) == 0
    (command,) = commands
    assert command[1].endswith("scripts/evaluate_checkpoint.py") and command[command.index("--model") + 1] == str(runs / f"{base}-seed3")
    assert command[command.index("--new_item_boost_max_warm_loss") + 1] == str(coldstart.BOOST_MAX_WARM_LOSS)
    row = next(r for r in json.loads((results / "coldstart.json").read_text())["rows"] if r["model"] == model)
    assert (row["cold_hr@10"], row["warm_ndcg@10"], row["new_item_boost"]) == (0.07, 0.08, 0.1)
    assert row["val_cold_hr@10"] == pytest.approx(0.04) and row["n_val_cold_users"] == 81  # the sweep at the chosen boost
    assert row["epochs_run"] == 6 and "evaluate_checkpoint.py" in row["command"] and "finetune.py" in row["command"]
    report = (results / "coldstart.md").read_text()
    assert report.count(f"**{model}: cold HR@10 / warm HR@10") == 1  # compared with two models, one share line
    assert "(the boost's own cost, chosen at most 5% on validation): +60.0%, with cold HR@10 / warm HR@10 0.20 -> 0.47" in report
    # --reuse_finished reads a re-score written after its run finished instead of scoring again.
    assert coldstart.main(["--models", model, "--seeds", "3", "--runs_dir", str(runs), "--results_dir", str(results), "--reuse_finished"]) == 0
    assert len(commands) == 1
    assert coldstart.MODEL_SEEDS[model] == (3, 4, 5)


def test_a_pair_measured_on_default_and_new_seeds_is_also_reported_per_group(tmp_path):
    """A design chosen on the default seeds and measured again on new ones: pooled, the two would hide whether it held up."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    for seed in (0, 1, 2, 3, 4, 5):
        _finished_run(runs / f"smollm2-lora-seed{seed}", seed, 0.0, validation=True)
        # The text model matches the no-tower one on seeds 0-2 and falls behind on seeds 3-5.
        _finished_run(runs / f"smollm2-lora-let-it-go-minilm-seed{seed}", seed, 0.0 if seed < 3 else -0.01, validation=True)
    models = "smollm2-lora,smollm2-lora-let-it-go-minilm"
    assert coldstart.main(["--models", models, "--seeds", "0,1,2,3,4,5", "--runs_dir", str(runs), "--results_dir", str(results), "--reuse_finished"]) == 0
    target = next(t for t in json.loads((results / "coldstart.json").read_text())["summary"]["targets"] if t["text_model"] == "smollm2-lora-let-it-go-minilm")
    first, second = target["by_seed_group"]
    assert (first["seeds"], second["seeds"]) == ([0, 1, 2], [3, 4, 5])
    assert first["warm_ndcg@10_change"] == pytest.approx(0.0) and second["warm_ndcg@10_change"] == pytest.approx(-0.1)
    report = (results / "coldstart.md").read_text()
    assert "  - seeds 0, 1, 2: warm NDCG@10 +0.0%" in report and "  - seeds 3, 4, 5: warm NDCG@10 -10.0%" in report
