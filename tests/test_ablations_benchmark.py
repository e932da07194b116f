"""benchmarks/ablations.py: every variant's command is a valid finetune command with the options it claims,
and the report is built from the rows of every study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hf_seqrec.training.config import config_from_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ablations  # noqa: E402


@pytest.mark.parametrize(
    "study, variant", [(study, variant) for study, spec in ablations.STUDIES.items() for variant in spec.variants]
)
def test_every_variant_command_parses_to_exactly_its_options(study, variant, tmp_path, monkeypatch):
    teacher = ablations.variant_options(study, variant, tmp_path / "run").get("teacher")
    if teacher:
        # The option is checked against a trained run; a stand-in keeps the parse off the real teacher's training.
        monkeypatch.chdir(tmp_path)
        (tmp_path / teacher).mkdir(parents=True)
        (tmp_path / teacher / "config.json").write_text("{}")
    command = ablations.variant_command(study, variant, tmp_path / "run")
    config = config_from_args(command[2:])  # drop the interpreter and the script
    options = ablations.variant_options(study, variant, tmp_path / "run")
    assert config.report_to is None and options.pop("report_to") == "none"
    for key, value in options.items():
        assert getattr(config, key) == value, key


def test_a_finished_run_is_reused_only_when_its_config_matches(tmp_path):
    import yaml

    run_dir = tmp_path / "layers-4"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    options = ablations.variant_options("depth", "layers-4", run_dir)
    (run_dir / "training_config.yaml").write_text(yaml.safe_dump(options))
    assert ablations.finished_run_matches("depth", "layers-4", run_dir)
    (run_dir / "training_config.yaml").write_text(yaml.safe_dump({**options, "backbone_layers": 8}))
    assert not ablations.finished_run_matches("depth", "layers-4", run_dir)


def _row(variant: str, ndcg: float) -> dict:
    return {
        "variant": variant, "change": f"change of {variant}", "validation_ndcg@10": ndcg, "validation_hr@10": 2 * ndcg,
        "test_ndcg@10": ndcg, "test_hr@10": 2 * ndcg, "test_ndcg@10_interval": [ndcg - 0.01, ndcg + 0.01],
        "best_epoch": 2, "epochs_run": 3, "validation_by_epoch": [ndcg / 2, ndcg, ndcg], "train_seconds": 100.0,
        "command": f"python scripts/finetune.py --{variant}",
    }


def test_report_shows_each_study_against_its_own_base_and_lists_what_is_missing(tmp_path):
    studies = {
        "depth": {"rows": [_row("layers-8", 0.08), _row("layers-4", 0.10)]},
        "convergence": {"rows": [_row("base", 0.10)], "notes": ["one variant was stopped early"]},
    }
    results = {"command": "python benchmarks/ablations.py", "generated": "now", "machine": "test", "studies": studies}
    text = ablations.render_markdown(results)
    assert "| layers-4 | change of layers-4 | 0.1000 | +25.0% |" in text  # against layers-8, the depth base
    assert "Not run yet: layers-12, layers-30" in text
    assert "- one variant was stopped early" in text
    assert "One epoch" not in text  # a study without rows is left out


def test_results_from_before_the_studies_are_read_as_the_one_epoch_study(tmp_path):
    path = tmp_path / "ablations.json"
    path.write_text(json.dumps({"rows": [_row("base", 0.03)]}))
    assert [r["variant"] for r in ablations.load_studies(path)["one-epoch"]["rows"]] == ["base"]


def test_quality_reuses_a_finished_run_only_when_its_whole_configuration_is_the_models(tmp_path):
    import quality
    import yaml

    from hf_seqrec.training.config import config_from_args

    run_dir = tmp_path / "finished"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    command = quality.model_command("smollm2-lora", 0, tmp_path / "elsewhere", False, {})
    recorded = config_from_args(command[2:]).to_dict()
    recorded.update(output_dir=str(run_dir), timestamp_column="timestamp")  # what "auto" resolved to
    (run_dir / "training_config.yaml").write_text(yaml.safe_dump(recorded))
    assert quality.finished_run_matches(command, run_dir)
    other_seed = quality.model_command("smollm2-lora", 1, tmp_path / "elsewhere", False, {})
    assert not quality.finished_run_matches(other_seed, run_dir)
    (run_dir / "training_config.yaml").write_text(yaml.safe_dump({**recorded, "num_epochs": recorded["num_epochs"] + 1}))
    assert not quality.finished_run_matches(command, run_dir)
