"""The new-item boost: a constant on the scores of items without a trained ID, chosen on the cold-start validation split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import pipeline

from hf_seqrec.data.collator import NextItemCollator
from hf_seqrec.entry_points import run_cli
from hf_seqrec.evaluation.evaluator import rank_targets
from hf_seqrec.evaluation.new_item_boost import BOOST_GRID, boost_summary, boosted_ranks, choose_new_item_boost
from hf_seqrec.evaluation.ranking import full_ranking_metrics
from hf_seqrec.inference.evaluate_command import evaluate_main
from hf_seqrec.training.finetune_command import finetune_main
from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.modeling.configuration_seqrec import SeqRecConfig
from hf_seqrec.training.config import ConfigError, FinetuneConfig, config_from_args
from testing_utils import script_env, write

REPO = Path(__file__).resolve().parents[1]
TRAINED = range(20)  # of the 30 catalogue items, the ones "training saw"; 20..29 are scored from text alone
COLD = range(20, 30)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tower(catalog, **options) -> tuple[SeqRecForNextItem, object]:
    """A text-tower tiny model whose first 20 items have a (random, non-zero) ID embedding, as after training."""
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, item_text_tower=True, **options)
    model.item_catalog = catalog
    model.item_table.set_items_with_id_embedding(TRAINED)
    with torch.no_grad():
        model.item_table.weight.normal_(std=0.05)  # the trained items now score apart from their text
    model.eval()
    return model, tokenizer


@pytest.fixture
def tower_model(catalog):
    return tower(catalog)


@pytest.fixture
def users() -> Dataset:
    """60 evaluation rows as the splits hold them: warm histories, and targets cycling through warm and cold items."""
    generator = torch.Generator().manual_seed(1)
    rows: dict[str, list] = {"user_id": [], "history": [], "target": []}
    for user in range(60):
        length = int(torch.randint(2, 9, (1,), generator=generator))
        rows["user_id"].append(str(user))
        rows["history"].append(torch.randperm(20, generator=generator)[:length].tolist())
        rows["target"].append(user % 30)
    return Dataset.from_dict(rows)


def loader(users: Dataset) -> DataLoader:
    return DataLoader(users, batch_size=16, collate_fn=NextItemCollator(12))


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("score_bias", [False, True])
def test_boost_lifts_exactly_the_items_without_an_id_and_only_when_recommending(catalog, score_bias):
    model, _ = tower(catalog, item_score_bias=score_bias)
    inputs = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    with torch.no_grad():
        plain = model(inputs, attention_mask=mask).logits
        model.config.new_item_boost = 0.75
        boosted = model(inputs, attention_mask=mask).logits
    assert torch.equal(boosted[:, :20], plain[:, :20])
    if score_bias:  # the boost joins the items' own offsets before the dot products are added: equal up to rounding
        assert torch.allclose(boosted[:, 20:], plain[:, 20:] + 0.75, atol=1e-6, rtol=0)
    else:
        assert torch.equal(boosted[:, 20:], plain[:, 20:] + 0.75)

    # Training never sees it: neither the loss nor the logits a training pass returns move.
    labels = torch.randint(0, 30, (2, 4), generator=torch.Generator().manual_seed(2))
    model.train()
    outputs = {}
    for boost in (0.0, 0.75):
        model.config.new_item_boost = boost
        torch.manual_seed(3)
        outputs[boost] = model(inputs, attention_mask=mask, labels=labels, return_logits=True)
    assert torch.equal(outputs[0.0].loss, outputs[0.75].loss)
    assert torch.equal(outputs[0.0].logits, outputs[0.75].logits)
    assert torch.equal(outputs[0.0].logits, plain)  # and without dropout a training pass scores as recommending does


def test_boost_needs_a_text_tower_and_a_finite_value_and_choosing_it_needs_cold_targets():
    with pytest.raises(ValueError, match="^new_item_boost: applies only with item_text_tower"):
        SeqRecConfig(num_items=5, new_item_boost=0.5)
    with pytest.raises(ValueError, match="^new_item_boost: applies only with item_text_tower"):
        SeqRecForNextItem.from_backbone("tiny-llama", ["a", "b", "c"], max_len=12, new_item_boost=0.5)
    for value in (float("nan"), float("inf"), None):  # None: a config.json holding "new_item_boost": null
        with pytest.raises(ValueError, match="^new_item_boost: expected a finite number"):
            SeqRecConfig(num_items=5, item_text_tower=True, new_item_boost=value)
    assert SeqRecConfig(num_items=5, item_text_tower=True, new_item_boost=-0.5).new_item_boost == -0.5
    with pytest.raises(ConfigError, match="^new_item_boost: applies only with item_text_tower"):
        FinetuneConfig(new_item_boost=0.5)  # a fine-tuning flag like every model option, refused before any data loads

    with pytest.raises(ConfigError, match="^new_item_boost_max_warm_loss: .*--cold_start_fraction"):
        FinetuneConfig(item_text_tower=True, new_item_boost_max_warm_loss=0.05)
    with pytest.raises(ConfigError, match="^new_item_boost_max_warm_loss: needs --item_text_tower"):
        FinetuneConfig(cold_start_fraction=0.1, new_item_boost_max_warm_loss=0.05)
    for share in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"^new_item_boost_max_warm_loss: expected a share in \[0, 1\)"):
            FinetuneConfig(cold_start_fraction=0.1, item_text_tower=True, new_item_boost_max_warm_loss=share)
    config = config_from_args(
        ["--cold_start_fraction", "0.1", "--item_text_tower", "--new_item_boost_max_warm_loss", "0", "--new_item_boost", "0.3"]
    )
    assert config.new_item_boost_max_warm_loss == 0.0 and config.model_options()["new_item_boost"] == 0.3


# ----------------------------------------------------------------------------- ranking with boosts
def test_boosted_ranks_are_the_ranks_the_boosted_model_gives(tower_model, users):
    model, _ = tower_model
    boosts = [0.0, 0.05, 0.3, 1.0, 5.0]
    ranks = boosted_ranks(model, loader(users), boosts)
    assert ranks.shape == (len(boosts), len(users)) and ranks.dtype == np.int64
    for boost, per_user in zip(boosts, ranks):
        model.config.new_item_boost = boost
        np.testing.assert_array_equal(per_user, rank_targets(model, loader(users)))
    assert model.config.new_item_boost == 5.0 and not model.training  # scoring with boosts leaves the model as it was

    cold = np.isin(users["target"], list(COLD))
    steps = np.diff(ranks, axis=0)
    assert (steps[:, cold] <= 0).all() and (steps[:, ~cold] >= 0).all()
    assert (steps[:, cold] < 0).any() and (steps[:, ~cold] > 0).any()  # the boosts tried do move targets
    # A boost beyond the spread of the scores puts every cold item above every warm one (no history item is cold).
    assert (ranks[-1, cold] <= len(COLD)).all() and (ranks[-1, ~cold] > len(COLD)).all()


def test_choose_new_item_boost_takes_the_largest_boost_within_the_warm_loss(tower_model, users):
    model, _ = tower_model
    targets = users["target"]
    chosen = {}
    for share in (0.0, 0.05, 0.3, 0.6):
        choice = choose_new_item_boost(model, loader(users), targets, COLD, share)
        sweep = choice["sweep"]
        assert [point["boost"] for point in sweep] == list(BOOST_GRID)
        assert choice["n_validation_users_cold"] == 20 and choice["n_validation_users_warm"] == 40
        assert choice["max_warm_loss"] == share and choice["split"] == "validation"
        floor = (1 - share) * sweep[0]["warm_ndcg@10"]
        by_boost = {point["boost"]: point for point in sweep}
        assert by_boost[choice["chosen"]]["warm_ndcg@10"] >= floor
        assert all(point["warm_ndcg@10"] < floor for point in sweep if point["boost"] > choice["chosen"])
        chosen[share] = choice
    assert chosen[0.0]["sweep"][0]["warm_ndcg@10"] > 0  # the rule is not met trivially by a model that never hits
    strict = {point["boost"]: point for point in chosen[0.0]["sweep"]}
    assert strict[chosen[0.0]["chosen"]]["warm_ndcg@10"] == strict[0.0]["warm_ndcg@10"]
    assert [chosen[share]["chosen"] for share in sorted(chosen)] == sorted(chosen[share]["chosen"] for share in chosen)
    assert 0.0 < chosen[0.3]["chosen"] < BOOST_GRID[-1]  # a choice inside the grid: the rule had something to trade
    assert model.config.new_item_boost == 0.0  # choosing does not set it: the caller does

    # The sweep's point is what the model scores with that boost, split by the same cold items.
    picked = chosen[0.3]
    model.config.new_item_boost = picked["chosen"]
    ranks = rank_targets(model, loader(users))
    cold = np.isin(targets, list(COLD))
    point = next(p for p in picked["sweep"] if p["boost"] == picked["chosen"])
    for name, part in (("cold", cold), ("warm", ~cold)):
        metrics = full_ranking_metrics(ranks[part], ks=(10,), n_bootstrap=0)
        assert point[f"{name}_hr@10"] == metrics["hr@10"] and point[f"{name}_ndcg@10"] == metrics["ndcg@10"]
    line = boost_summary(picked)
    assert "\n" not in line and f"new_item_boost {picked['chosen']:g}" in line


def test_choosing_a_boost_needs_cold_and_warm_targets_and_a_text_tower(tower_model, tiny_model, users):
    model, _ = tower_model
    warm_users = users.filter(lambda row: row["target"] < 20)
    with pytest.raises(ValueError, match="the 40 users scored have 0 held out"):
        choose_new_item_boost(model, loader(warm_users), warm_users["target"], COLD, 0.05)
    cold_users = users.filter(lambda row: row["target"] >= 20)
    with pytest.raises(ValueError, match="the 20 users scored have 20 held out"):
        choose_new_item_boost(model, loader(cold_users), cold_users["target"], COLD, 0.05)
    plain, _ = tiny_model
    with pytest.raises(ValueError, match="no item text tower"):
        choose_new_item_boost(plain, loader(users), users["target"], COLD, 0.05)


# ----------------------------------------------------------------------------- checkpoints and the pipeline
def test_boost_is_saved_with_the_checkpoint_and_lifts_an_added_item_in_the_pipeline(tower_model, tmp_path):
    model, tokenizer = tower_model
    model.item_table.set_items_with_id_embedding(range(30))  # every catalogue item trained: only the added one is new
    model.config.new_item_boost = 5.0
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["new_item_boost"] == 5.0
    assert SeqRecForNextItem.from_pretrained(tmp_path).config.new_item_boost == 5.0

    recommend = pipeline("next-item", model=str(tmp_path))
    assert recommend.model.config.new_item_boost == 5.0
    recommend.add_items([{"item_id": "new-1", "text": "A documentary about trains (2024) | Documentary"}])
    history = {"history": ["3", "8", "13"]}

    def ranked(boost: float) -> list[dict]:
        recommend.model.config.new_item_boost = boost
        return recommend(history, top_k=31, exclude_seen=False)

    boosted, plain = ranked(5.0), ranked(0.0)
    position = {name: [r["item_id"] for r in results].index("new-1") for name, results in (("boosted", boosted), ("plain", plain))}
    assert position["boosted"] == 0 < position["plain"]  # 5 is far beyond the spread of these scores
    scores = {name: {r["item_id"]: r["score"] for r in results} for name, results in (("boosted", boosted), ("plain", plain))}
    assert scores["boosted"]["new-1"] == pytest.approx(scores["plain"]["new-1"] + 5.0, abs=1e-5)
    assert all(scores["boosted"][item] == scores["plain"][item] for item in scores["plain"] if item != "new-1")


# ----------------------------------------------------------------------------- the run and scripts/evaluate_checkpoint.py
@pytest.fixture(scope="module")
def boosted_run(tmp_path_factory) -> Path:
    """A tiny cold-start text-tower run that chooses its boost: the one training run of this module."""
    output_dir = tmp_path_factory.mktemp("boosted") / "run"
    command = [
        sys.executable, str(REPO / "scripts" / "finetune.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
        "--max_steps", "6", "--eval_max_users", "300", "--bootstrap_samples", "20", "--report_to", "none",
        "--cold_start_fraction", "0.1", "--item_text_tower", "--new_item_boost_max_warm_loss", "0.05",
        "--output_dir", str(output_dir),
    ]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


def test_run_chooses_the_boost_on_validation_and_saves_and_scores_with_it(boosted_run):
    metrics = json.loads((boosted_run / "metrics.json").read_text())
    choice = metrics["new_item_boost"]
    assert choice["chosen"] in BOOST_GRID and len(choice["sweep"]) == len(BOOST_GRID)
    assert choice["max_warm_loss"] == 0.05 and choice["split"] == "validation"
    assert choice["n_validation_users_cold"] + choice["n_validation_users_warm"] == metrics["validation"]["n_users"] == 300
    assert json.loads((boosted_run / "config.json").read_text())["new_item_boost"] == choice["chosen"]
    # The validation metrics reported are the chosen boost's: its cold and warm points recombine into them.
    point = next(p for p in choice["sweep"] if p["boost"] == choice["chosen"])
    recombined = sum(point[f"{part}_ndcg@10"] * choice[f"n_validation_users_{part}"] for part in ("cold", "warm")) / 300
    assert recombined == pytest.approx(metrics["validation"]["ndcg@10"])
    assert "new_item_boost" in (boosted_run / "README.md").read_text()


def test_evaluate_checkpoint_scores_with_the_saved_boost_and_makes_the_same_choice(boosted_run, tmp_path):
    metrics = json.loads((boosted_run / "metrics.json").read_text())
    evaluated = tmp_path / "eval.json"
    command = [sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(boosted_run), "--max_users", "300",
               "--bootstrap_samples", "20", "--output", str(evaluated)]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(evaluated.read_text())["cold_start"] == metrics["cold_start"]

    # In-process, through the script's own entry point: choosing again on the run's validation split.
    chosen_again = tmp_path / "chosen.json"
    assert run_cli(evaluate_main, [
        "--model", str(boosted_run), "--max_users", "300", "--bootstrap_samples", "20", "--output", str(chosen_again),
        "--new_item_boost_max_warm_loss", "0.05",
    ]) == 0
    again = json.loads(chosen_again.read_text())
    assert again["new_item_boost"]["chosen"] == metrics["new_item_boost"]["chosen"]
    assert again["new_item_boost"]["sweep"] == metrics["new_item_boost"]["sweep"]
    assert again["cold_start"] == metrics["cold_start"]


def test_evaluate_checkpoint_refuses_a_boost_it_cannot_apply(boosted_run, movielens, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the two together before loading anything
        evaluate_main(["--model", str(boosted_run), "--new_item_boost", "1", "--new_item_boost_max_warm_loss", "0.05"])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    # A checkpoint without a text tower (and no run config: the default data, MovieLens-100K, matches its catalogue).
    torch.manual_seed(0)
    plain, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", movielens.catalog.texts, max_len=12)
    plain.item_catalog = movielens.catalog
    plain.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    for flag, value in (("--new_item_boost_max_warm_loss", "0.05"), ("--new_item_boost", "0.5")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(evaluate_main, ["--model", str(tmp_path / "plain"), "--max_users", "10", flag, value])
        assert exit_info.value.code == 2 and "has no item text tower" in capsys.readouterr().err

    # The boosted run's text-tower checkpoint, read with a config whose run held no items out.
    no_cold_start = write(tmp_path, "no_cold_start.yaml", "dataset: movielens-100k\nbackbone: tiny-llama\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(evaluate_main, [
            "--model", str(boosted_run), "--config", str(no_cold_start), "--max_users", "10",
            "--new_item_boost_max_warm_loss", "0.05",
        ])
    assert exit_info.value.code == 2 and "held none out: choose on a run made with --cold_start_fraction" in capsys.readouterr().err

    # A boost that would turn every score into NaN, a share outside [0, 1), and too few users to choose on: usage errors.
    for flags, message in (
        (["--new_item_boost", "nan"], "--new_item_boost: expected a finite number"),
        (["--new_item_boost_max_warm_loss", "1.5"], "expected a share in [0, 1)"),
        (["--max_users", "3", "--new_item_boost_max_warm_loss", "0.05"], "score more users (--max_users)"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(evaluate_main, ["--model", str(boosted_run), *flags])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, flags


def test_a_run_that_cannot_choose_the_boost_stops_before_training(tmp_path, capsys):
    """Three validation users hold no held-out target: the run says so at once instead of failing after its epochs."""
    output_dir = tmp_path / "run"
    status = run_cli(finetune_main, [
        "--config", str(REPO / "configs" / "tiny.yaml"), "--max_steps", "2", "--eval_max_users", "3", "--report_to", "none",
        "--cold_start_fraction", "0.1", "--item_text_tower", "--new_item_boost_max_warm_loss", "0.05", "--output_dir", str(output_dir),
    ])
    assert status == 2
    error = capsys.readouterr().err
    assert "new_item_boost_max_warm_loss: choosing new_item_boost needs validation targets both held out" in error
    assert "the 3 users scored have 0 held out (raise --eval_max_users" in error
    assert not (output_dir / "checkpoints").exists() and not (output_dir / "metrics.json").exists()
