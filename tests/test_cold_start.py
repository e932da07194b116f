"""Cold start: the held-out split, the text tower, adding items after training, and the end-to-end report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import Dataset
from transformers import pipeline

from hf_seqrec.data.cold_start_split import choose_cold_items, hold_out_items
from hf_seqrec.data.splitting import leave_one_out
from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from testing_utils import script_env

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- the held-out split
def test_cold_items_are_a_seeded_fraction_of_the_catalogue():
    first = choose_cold_items(1682, 0.1, seed=0)
    assert first == choose_cold_items(1682, 0.1, seed=0)
    assert first != choose_cold_items(1682, 0.1, seed=1)
    assert len(first) == 168 == len(set(first)) and all(0 <= i < 1682 for i in first)
    with pytest.raises(ValueError, match="fraction"):
        choose_cold_items(100, 1.0, seed=0)
    with pytest.raises(ValueError, match="holds out 0 of 5 items"):
        choose_cold_items(5, 0.05, seed=0)


def test_held_out_items_never_reach_training_nor_any_input_history_but_stay_as_targets():
    sequences = {
        "a": [0, 1, 2, 3, 4, 5],
        "b": [5, 1, 6, 7, 2],  # test target 2 is cold, validation target 7 warm
        "c": [1, 9, 8],  # training part [1] is cold: no training sequence, empty validation history
        "d": [3, 0, 9, 1, 4],  # validation target 1 is cold: it is removed from the test history too
        "e": [2, 1, 6],  # every item before the test target is cold: no row in any split
    }
    splits, _ = leave_one_out(sequences)
    cold = [1, 2]
    held_out, report = hold_out_items(splits, cold)
    for items in held_out["train"]["items"]:
        assert not set(items) & set(cold) and len(items) >= 2
    for split in ("validation", "test"):
        for history in held_out[split]["history"]:
            assert history and not set(history) & set(cold)  # no model ever reads a held-out item
    # Cold targets are what is measured: every user with a history left keeps their target.
    original = dict(zip(splits["test"]["user_id"], splits["test"]["target"]))
    assert dict(zip(held_out["test"]["user_id"], held_out["test"]["target"])) == {u: original[u] for u in "abcd"}
    tests = dict(zip(held_out["test"]["user_id"], held_out["test"]["history"]))
    assert tests["b"] == [5, 6, 7]
    assert tests["d"] == [3, 0, 9]
    assert tests["c"] == [9]
    assert report == {
        "n_cold_items": 2, "n_train_interactions_removed": 5, "n_train_users_dropped": 2,
        "n_validation_users_dropped": 2, "n_test_users_dropped": 1,
    }


# ----------------------------------------------------------------------------- the text tower
@pytest.fixture
def tower_model(catalog):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone(
        "tiny-llama", catalog.texts, max_len=12, item_text_tower=True, item_id_dropout=0.5
    )
    model.item_catalog = catalog
    return model, tokenizer


def test_text_tower_starts_where_the_text_initialised_table_starts(tower_model, tiny_model):
    tower, _ = tower_model
    plain, _ = tiny_model
    assert torch.allclose(tower.item_table.vectors(), plain.item_table.weight, atol=1e-6)
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable == {"item_table.weight", "item_table.text_projection.weight", "item_table.text_projection.bias"}


def test_items_without_id_embedding_are_scored_from_text_and_get_no_id_gradient(tower_model):
    model, _ = tower_model
    model.item_table.set_items_with_id_embedding(range(20))
    model.train()
    inputs = torch.randint(0, 20, (4, 8))
    labels = torch.randint(0, 30, (4, 8))
    model(inputs, labels=labels).loss.backward()
    id_gradient = model.item_table.weight.grad
    assert id_gradient[20:].abs().sum() == 0 and id_gradient[:20].abs().sum() > 0
    assert model.item_table.text_projection.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.item_table.weight[25] += 100.0  # an unused ID embedding changes nothing
        model.item_table.weight[5] += 1.0
    model.eval()
    vectors = model.item_table.vectors()
    table = model.item_table
    text_only = table.text_projection((table.text_features - table.text_mean) / table.text_scale)
    assert torch.allclose(vectors[25], text_only[25]) and not torch.allclose(vectors[5], text_only[5])


def test_id_dropout_leaves_out_whole_id_embeddings_only_in_training(tower_model):
    model, _ = tower_model
    table = model.item_table
    with torch.no_grad():
        table.weight.normal_()
    model.eval()
    full = table.vectors()
    text_only = full - table.weight
    model.train()
    torch.manual_seed(1)
    dropped = table.vectors()
    # Every row is either text + ID (kept, not rescaled) or text alone (dropped); about half of each.
    kept = torch.isclose(dropped, full, atol=1e-6).all(dim=1)
    left_out = torch.isclose(dropped, text_only, atol=1e-6).all(dim=1)
    assert bool((kept | left_out).all()) and 5 <= int(left_out.sum()) <= 25
    model.eval()
    assert torch.equal(table.vectors(), full)


# ----------------------------------------------------------------------------- adding items after training
def test_added_items_are_scored_from_text_and_survive_save_and_load(tower_model, tmp_path):
    model, tokenizer = tower_model
    model.item_table.set_items_with_id_embedding(range(30))
    with torch.no_grad():
        model.item_table.weight.normal_(std=0.05)
        model.item_table.text_projection.weight.add_(0.01 * torch.randn_like(model.item_table.text_projection.weight))
    model.eval()
    model.save_pretrained(tmp_path / "trained")
    tokenizer.save_pretrained(tmp_path / "trained")
    loaded = SeqRecForNextItem.from_pretrained(tmp_path / "trained")
    rows = loaded.add_items(pd.DataFrame({"item_id": [101, 102], "text": ["A new film (2024) | Horror", "Another one | Drama"]}))
    assert rows == [30, 31] and loaded.config.num_items == 32 and loaded.item_catalog.item_ids[-2:] == ["101", "102"]
    table = loaded.item_table
    encoding = loaded.encode_item_texts(["A new film (2024) | Horror"], tokenizer)
    expected = table.text_projection((encoding - table.text_mean) / table.text_scale)[0]
    assert torch.allclose(loaded.item_table.vectors()[30], expected, atol=1e-5)
    assert loaded(torch.tensor([[1, 2, 3]])).logits.shape == (1, 32)

    loaded.save_pretrained(tmp_path / "grown")
    again = SeqRecForNextItem.from_pretrained(tmp_path / "grown")
    assert again.config.num_items == 32 and "101" in again.item_catalog
    assert torch.allclose(again.item_table.vectors(), loaded.item_table.vectors())


def test_pipeline_recommends_an_item_added_after_training(tower_model, tmp_path):
    model, tokenizer = tower_model
    model.eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    recommend = pipeline("next-item", model=str(tmp_path))
    history = {"history": ["3", "8", "13"]}
    # The new item's text repeats the history's last item, so its text vector is that item's.
    assert recommend.add_items([{"item_id": "new-1", "text": model.item_catalog.texts[12]}]) == ["new-1"]
    ranked = [r["item_id"] for r in recommend(history, top_k=31, exclude_seen=False)]
    assert "new-1" in ranked
    scores = {r["item_id"]: r["score"] for r in recommend(history, top_k=31, exclude_seen=False)}
    assert scores["new-1"] == pytest.approx(scores["13"], abs=1e-4)


def test_add_items_rejects_known_ids_and_empty_texts(tower_model):
    model, tokenizer = tower_model
    with pytest.raises(ValueError, match=r"row 1: item_id '5' is already in the catalogue"):
        model.add_items([{"item_id": "x", "text": "X"}, {"item_id": 5, "text": "again"}], tokenizer=tokenizer)
    for spelling in ("5.0", " 5 ", 5.0):  # the catalogue's id rule, the one pipeline lookups use
        with pytest.raises(ValueError, match=r"row 0: item_id '5' is already in the catalogue"):
            model.add_items([{"item_id": spelling, "text": "again"}], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="row 0: expected a string or integer item_id"):
        model.add_items([{"item_id": None, "text": "X"}], tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"row 0 \(item_id 'y'\): empty text"):
        model.add_items([{"item_id": "y", "text": "  "}], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="row 0: expected an 'item_id' and a 'text' field"):
        model.add_items([{"id": "z"}], tokenizer=tokenizer)
    assert model.config.num_items == 30  # nothing half-added
    assert model.add_items(Dataset.from_dict({"item_id": ["z"], "text": ["Zed"]}), tokenizer=tokenizer) == [30]


def test_an_id_only_model_adds_items_at_their_text_encoding(tiny_model):
    model, tokenizer = tiny_model
    model.add_items([{"item_id": "new", "text": model.item_catalog.texts[3]}], tokenizer=tokenizer)
    assert torch.allclose(model.item_table.weight[30], model.item_table.weight[3], atol=1e-6)


# ----------------------------------------------------------------------------- configuration and the end-to-end report
def test_text_tower_options_are_checked():
    assert FinetuneConfig(item_text_tower=True).item_id_dropout == 0.5
    assert FinetuneConfig().item_id_dropout == 0.0
    with pytest.raises(ConfigError, match="item_id_dropout: applies only with item_text_tower"):
        FinetuneConfig(item_id_dropout=0.3)
    with pytest.raises(ConfigError, match="'sasrec' baseline has no tokenizer"):
        FinetuneConfig(backbone="sasrec", item_text_tower=True)
    with pytest.raises(ConfigError, match="needs item_text_init"):
        FinetuneConfig(item_text_tower=True, item_text_init=False)
    with pytest.raises(ConfigError, match="cold_start_fraction"):
        FinetuneConfig(cold_start_fraction=1.5)


def test_cold_start_run_reports_cold_and_warm_targets(tmp_path):
    output_dir = tmp_path / "cold"
    command = [
        sys.executable, str(REPO / "scripts" / "finetune.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
        "--max_steps", "6", "--eval_max_users", "300", "--bootstrap_samples", "20", "--report_to", "none",
        "--cold_start_fraction", "0.1", "--item_text_tower", "--output_dir", str(output_dir),
    ]
    env = script_env()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((output_dir / "metrics.json").read_text())
    cold_start = metrics["cold_start"]
    assert cold_start["n_cold_items"] == 168 and cold_start["seed"] == 42
    assert cold_start["n_test_users_cold"] + cold_start["n_test_users_warm"] == metrics["test"]["n_users"] == 300
    assert cold_start["n_test_users_cold"] > 0
    # The split metrics recombine into the overall ones (user-weighted means).
    weighted = sum(cold_start[f"test_{p}"]["ndcg@10"] * cold_start[f"n_test_users_{p}"] for p in ("cold", "warm")) / 300
    assert weighted == pytest.approx(metrics["test"]["ndcg@10"])
    cold_items = set(metrics["data_report"]["cold_start"]["cold_items"])
    counts = json.loads((output_dir / "item_popularity.json").read_text())["counts"]
    assert all(counts[i] == 0 for i in cold_items)  # training never saw them
    card = (output_dir / "README.md").read_text()
    assert "### Cold-start evaluation" in card and "| cold | " in card
    reloaded = SeqRecForNextItem.from_pretrained(output_dir)
    has_id = reloaded.item_table.has_id_embedding
    assert all(has_id[i] == 0 for i in cold_items) and has_id.sum() > 1400

    # scripts/evaluate_checkpoint.py rebuilds the same held-out split from the run's config and splits its report the same way.
    evaluated = tmp_path / "eval.json"
    command = [sys.executable, str(REPO / "scripts" / "evaluate_checkpoint.py"), "--model", str(output_dir), "--max_users", "300",
               "--bootstrap_samples", "20", "--output", str(evaluated)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(evaluated.read_text())["cold_start"] == cold_start


def test_text_projection_learns_at_the_table_rate_over_its_fan_in(tower_model):
    from hf_seqrec.training.trainer import build_optimizer

    model, _ = tower_model
    optimizer = build_optimizer(model, FinetuneConfig(item_text_tower=True, learning_rate=1e-3, item_table_learning_rate=2e-3))
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    table = model.item_table
    fan_in = table.text_projection.weight.size(1)
    assert rates[id(table.text_projection.weight)] == pytest.approx(2e-3 / fan_in)
    assert rates[id(table.text_projection.bias)] == rates[id(table.weight)] == 2e-3
    assert sum(len(group["params"]) for group in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())
