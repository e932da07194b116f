"""Baselines on the shared stack: SASRec, GRU4Rec, the LSTM recommender, popularity, and the quality benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, GPT2Model

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.data.collator import NextItemCollator
from hf_seqrec.evaluation.evaluator import evaluate_split
from hf_seqrec.modeling import load_backbone
from hf_seqrec.modeling.baselines import (
    BASELINE_BACKBONES,
    GRU4RecConfig,
    GRU4RecModel,
    LSTMRecConfig,
    LSTMRecModel,
    baseline_backbone_config,
)
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from testing_utils import finetune_metrics, pattern_batch, remove_one_weight, run_in_fresh_process, script_env

REPO = Path(__file__).resolve().parents[1]
NUM_ITEMS = 30


def _finetune(output_dir: Path, *options: str) -> dict:
    return finetune_metrics(output_dir, *options, "--output_dir", str(output_dir), "--report_to", "none")


# ----------------------------------------------------------------------------- backbones and registration
def test_recurrent_backbones_are_registered_with_the_auto_classes():
    for config_class, model_class in ((GRU4RecConfig, GRU4RecModel), (LSTMRecConfig, LSTMRecModel)):
        config = AutoConfig.for_model(config_class.model_type, hidden_size=16, num_hidden_layers=2)
        assert type(config) is config_class
        backbone = AutoModel.from_config(config)
        assert type(backbone) is model_class
        hidden = backbone(inputs_embeds=torch.randn(2, 5, 16), attention_mask=torch.ones(2, 5)).last_hidden_state
        assert hidden.shape == (2, 5, 16)


def test_sasrec_is_a_small_causal_transformer_with_learned_positions():
    config = baseline_backbone_config("sasrec", max_len=200)
    assert (config.n_embd, config.n_layer, config.n_head, config.n_positions, config.resid_pdrop) == (64, 2, 1, 200, 0.2)
    backbone, tokenizer = load_backbone("sasrec", max_len=200)
    assert isinstance(backbone, GPT2Model) and tokenizer is None
    backbone.eval()
    x = torch.randn(1, 6, 64)
    full = backbone(inputs_embeds=x).last_hidden_state
    prefix = backbone(inputs_embeds=x[:, :3]).last_hidden_state
    assert torch.allclose(full[:, :3], prefix, atol=1e-5)  # causal: a position never reads the future
    with pytest.raises(ValueError, match="only size the from-scratch"):
        load_backbone("tiny-llama", hidden_size=64)


# ----------------------------------------------------------------------------- the model on each backbone
@pytest.mark.parametrize("name", BASELINE_BACKBONES)
def test_baseline_learns_a_pattern_and_reloads_with_identical_scores(name, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone(name, num_items=NUM_ITEMS, max_len=12, backbone_options={"hidden_size": 32})
    assert tokenizer is None
    assert not model.config.use_lora and not model.config.backbone_pretrained
    assert all(p.requires_grad for p in model.parameters())  # the whole backbone is trained
    items, mask, labels = pattern_batch(NUM_ITEMS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for step in range(40):
        # Told the optimizer steps taken, as the training loop does: SVAE's KL weight anneals from 0 with them.
        loss = model(items, mask, labels=labels, training_step=step).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses

    model.eval()
    expected = model(items, mask).logits
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "backbone.safetensors", "item_table.safetensors", "baselines.py", "modeling_seqrec.py"} <= files
    assert "adapter_model.safetensors" not in files
    reloaded = SeqRecForNextItem.from_pretrained(tmp_path)
    assert torch.equal(reloaded(items, mask).logits, expected)
    assert torch.equal(AutoModel.from_pretrained(tmp_path)(items, mask).logits, expected)


@pytest.mark.parametrize("name", BASELINE_BACKBONES)
def test_a_backbone_file_that_lacks_weights_is_refused_naming_the_file(name, tmp_path):
    """A from-scratch backbone is all in backbone.safetensors: a weight not there would stay random."""
    model, _ = SeqRecForNextItem.from_backbone(name, num_items=NUM_ITEMS, max_len=12, backbone_options={"hidden_size": 32})
    model.save_pretrained(tmp_path)
    SeqRecForNextItem.from_pretrained(tmp_path)  # the complete file loads
    path = tmp_path / "backbone.safetensors"
    left_out, count = remove_one_weight(path)
    with pytest.raises(ValueError, match=r"backbone\.safetensors: backbone weights do not fit .*1 weights missing") as caught:
        SeqRecForNextItem.from_pretrained(tmp_path)
    assert left_out in str(caught.value)
    save_file({}, path)
    with pytest.raises(ValueError, match=rf"{count} weights missing"):
        SeqRecForNextItem.from_pretrained(tmp_path)


def test_baselines_refuse_lora_pretrained_weights_and_item_texts():
    with pytest.raises(ValueError, match="use_lora"):
        SeqRecForNextItem.from_backbone("gru4rec", num_items=5, use_lora=True)
    with pytest.raises(ValueError, match="no pretrained weights"):
        SeqRecForNextItem.from_backbone("sasrec", num_items=5, pretrained=True)
    with pytest.raises(ValueError, match="no tokenizer"):
        SeqRecForNextItem.from_backbone("lstm", ["a", "b"])


def test_finetune_config_fills_in_baseline_sizes_and_refuses_them_for_language_models():
    config = FinetuneConfig.from_yaml(REPO / "configs" / "sasrec.yaml")
    assert (config.hidden_size, config.num_layers, config.num_heads, config.dropout, config.max_len) == (64, 2, 1, 0.2, 200)
    assert not config.use_lora and not config.item_text_init
    gru = FinetuneConfig(backbone="gru4rec")
    assert (gru.hidden_size, gru.num_layers, gru.num_heads, gru.use_lora) == (64, 1, None, False)
    with pytest.raises(ConfigError, match="num_heads"):
        FinetuneConfig(backbone="lstm", num_heads=2)
    with pytest.raises(ConfigError, match="hidden_size"):
        FinetuneConfig(backbone="tiny-llama", hidden_size=64)
    lm = FinetuneConfig()  # the LM's defaults are untouched
    assert lm.use_lora and lm.item_text_init and lm.hidden_size is None


# ----------------------------------------------------------------------------- through scripts/finetune.py on MovieLens-100K
def test_popularity_through_finetune_matches_counting_by_hand(movielens, tmp_path):
    metrics = _finetune(tmp_path / "pop", "--backbone", "popularity", "--bootstrap_samples", "10")
    assert metrics["training"]["optimizer_steps"] == 0 and metrics["test"]["n_users"] == 943
    assert {"metrics.json", "training_config.yaml", "item_popularity.json", "item_catalog.jsonl"} <= {p.name for p in (tmp_path / "pop").iterdir()}

    counts = Counter(item for items in movielens.splits["train"]["items"] for item in items)
    scores = np.array([counts.get(i, 0) for i in range(len(movielens.catalog))], dtype=float)
    for split in ("validation", "test"):
        ranks = []
        for history, target in zip(movielens.splits[split]["history"], movielens.splits[split]["target"]):
            unmasked = np.ones(len(scores), dtype=bool)
            unmasked[list(history)] = False
            unmasked[target] = True
            better = ((scores > scores[target]) & unmasked).sum()
            tied = ((scores == scores[target]) & unmasked).sum() - 1
            ranks.append(1 + better + tied)
        ranks = np.array(ranks)
        assert metrics[split]["hr@10"] == pytest.approx((ranks <= 10).mean(), abs=1e-12)
        assert metrics[split]["ndcg@10"] == pytest.approx(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0).mean(), abs=1e-12)
        assert metrics[split]["mrr"] == pytest.approx((1 / ranks).mean(), abs=1e-12)
    assert metrics["test"]["hr@10"] > 0.05  # popularity is a real baseline on MovieLens-100K, not a constant


def test_gru4rec_through_finetune_trains_saves_and_reloads_to_the_same_metrics(movielens, tmp_path):
    output_dir = tmp_path / "gru4rec"
    metrics = _finetune(
        output_dir, "--config", str(REPO / "configs" / "gru4rec.yaml"), "--max_len", "50", "--num_epochs", "2",
        "--eval_max_users", "150", "--bootstrap_samples", "10", "--learning_rate", "0.005",
    )
    history = metrics["training"]["history"]
    assert len(history) == 2 and history[1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["validation_ndcg@10"] > 0.0
    files = {p.name for p in output_dir.iterdir()}
    assert {"backbone.safetensors", "item_table.safetensors", "baselines.py", "config.json", "README.md"} <= files
    assert not {"tokenizer.json", "tokenizer_config.json", "adapter_model.safetensors"} & files

    model = SeqRecForNextItem.from_pretrained(output_dir)
    test = movielens.splits["test"].select(range(150))
    loader = torch.utils.data.DataLoader(test, batch_size=64, collate_fn=NextItemCollator(model.config.max_len))
    # Re-scored through the path the trainer's final test and scripts/evaluate_checkpoint.py take.
    again = evaluate_split(model, loader, movielens, "test", n_bootstrap=10, max_users=150).metrics
    assert again["n_users"] == metrics["test"]["n_users"] == 150
    for name in ("ndcg@10", "hr@10", "mrr"):
        assert again[name] == pytest.approx(metrics["test"][name], abs=1e-12)

    # The checkpoint's own code rebuilds the GRU backbone where hf_seqrec is never imported.
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
        items = torch.tensor([[3, 17, 250, 9], [40, 41, 0, 0]])
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
        logits = model(items, mask).logits
        print("RESULT" + json.dumps({{"logits": logits.tolist(), "backbone": type(model.backbone).__module__,
              "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path, base_env=script_env(), PYTHONPATH="")
    assert out["hf_seqrec"] == [] and out["backbone"].startswith("transformers_modules.")
    items = torch.tensor([[3, 17, 250, 9], [40, 41, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.allclose(torch.tensor(out["logits"]), model(items, mask).logits, atol=1e-6)


# ----------------------------------------------------------------------------- the quality benchmark
def test_quality_benchmark_quick_runs_merges_rows_and_reports_what_is_missing(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    base = [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--quick", "--results_dir", str(results), "--runs_dir", str(runs)]

    def bench(*options: str) -> dict:
        done = subprocess.run([*base, *options], cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return json.loads((results / "ml100k-quick.json").read_text())

    first = bench("--models", "popularity,sasrec", "--seeds", "0")
    assert [(r["model"], r["seed"]) for r in first["rows"]] == [("popularity", 0), ("sasrec", 0)]
    row = first["rows"][1]
    assert set(("model", "seed", "ndcg@10", "hr@10", "mrr", "ndcg@20", "hr@20", "train_seconds", "peak_rss_mb")) <= set(row)
    assert row["quick"] and row["max_steps"] == 3 and "scripts/finetune.py" in row["command"]
    assert first["machine"] and first["protocol"]["ranking"].startswith("full")

    # A second model is merged in, and a finished run directory can stand in for the LM's rows.
    second = bench("--models", "lstm,smollm2-lora", "--seeds", "0", "--lm_runs", str(runs / "sasrec-seed0"))
    assert [(r["model"], r["seed"]) for r in second["rows"]] == [("popularity", 0), ("lstm", 0), ("sasrec", 0), ("smollm2-lora", 0)]
    assert second["rows"][3]["ndcg@10"] == row["ndcg@10"] and "--lm_runs" in second["rows"][3]["command"]
    ratio = second["summary"]["ratio_ndcg@10_lm_over_sasrec"]
    assert ratio == pytest.approx(1.0) if row["ndcg@10"] else ratio is None  # the same run on both sides
    assert [m["model"] for m in second["summary"]["missing"]] == ["gru4rec", "svae", "smollm2-lora-30l", "smollm2-lora-distill"]
    table = (results / "ml100k-quick.md").read_text()
    assert "| sasrec | 1 (0) |" in table and "`gru4rec`: seeds 0 not run yet" in table and "Quick rows" in table
    assert (results / "ml100k-quick.png").stat().st_size > 1000
