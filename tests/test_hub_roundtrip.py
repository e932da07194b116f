"""Train -> model card -> push to a local Hub over HTTP -> load back, with identical scores.

The Hub is `tests/hub_server.py` (a thread of this process). Clients run in subprocesses, because
huggingface_hub reads HF_ENDPOINT when it is imported: each child gets HF_ENDPOINT, a dummy
HF_TOKEN and its own empty HF_HOME, so every file it loads really came over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from transformers import pipeline

from hub_server import LocalHub
from hf_seqrec.publishing.model_card import render_model_card, write_model_card

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_ID = "alice/tiny-next-item"
HISTORIES = [{"history": ["50", "172", "133", "1", "7"]}, {"history": ["258", "100"]}, {"history_text": ["Toy Story (1995)", "star wars"]}]


def _run(code: str, env: dict, cwd: Path, timeout: int = 240) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"child failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.rsplit("RESULT", 1)[1])


def _hub_env(hub: LocalHub, home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN="hf_dummy_token",
        HF_HUB_OFFLINE="0",
        HF_HOME=str(home),  # an empty cache: nothing can come from an earlier download
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


SCORE_CODE = """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import torch
    {imports}
    histories = {histories}
    out = {{}}
    {body}
    out["hf_seqrec_imported"] = any(m.split(".")[0] == "hf_seqrec" for m in sys.modules)
    print("RESULT" + json.dumps(out))
"""


def _score_code(imports: str, body: str) -> str:
    return SCORE_CODE.format(imports=imports, histories=json.dumps(HISTORIES), body=textwrap.indent(textwrap.dedent(body), "    ").strip())


@pytest.fixture(scope="module")
def hub():
    with LocalHub() as server:
        yield server


@pytest.fixture(scope="module")
def trained(hub, tmp_path_factory):
    """A tiny real training run through scripts/finetune.py, pushed with --push_to_hub."""
    work = tmp_path_factory.mktemp("run")
    config = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    config.update(
        output_dir=str(work / "out"), max_steps=3, num_epochs=1, eval_max_users=16, bootstrap_samples=20,
        checkpoint_every_steps=0, report_to=None, push_to_hub=True, hub_model_id=REPO_ID,
    )
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = _hub_env(hub, work / "hf_home")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "finetune.py"), "--config", str(work / "config.yaml")],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"training failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return work / "out", work


def test_finetune_push_uploads_checkpoint_code_and_card(hub, trained):
    out, _ = trained
    uploaded = set(hub.repos[("model", REPO_ID)].files)
    expected = {
        "config.json", "adapter_model.safetensors", "item_table.safetensors", "item_catalog.jsonl",
        "tokenizer.json", "tokenizer_config.json", "README.md", "training_curve.png", "metrics.json",
        "modeling_seqrec.py", "configuration_seqrec.py", "backbones.py", "next_item.py",
    }
    assert expected <= uploaded, expected - uploaded
    assert not any(p.startswith(("checkpoints/", "best/")) for p in uploaded)  # training state stays local
    for name in expected:
        assert hub.repos[("model", REPO_ID)].files[name] == (out / name).read_bytes(), name
    methods = {method for method, _ in hub.requests}
    assert {"POST"} <= methods  # create, preupload and commit really went over HTTP


def test_hub_load_back_gives_identical_scores(hub, trained, tmp_path):
    """pipeline(model=repo_id) and from_pretrained(repo_id) score exactly like the local directory."""
    out, work = trained
    body = """
        from transformers import pipeline
        from hf_seqrec import SeqRecForNextItem
        for where, name in (("local", {local!r}), ("hub", {repo!r})):
            model = SeqRecForNextItem.from_pretrained(name)
            with torch.no_grad():
                logits = model(torch.tensor([[0, 5, 9], [3, 3, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]])).logits
            out[where + "_logits"] = logits.tolist()
            recommend = pipeline("next-item", model=name)
            out[where + "_pipeline"] = recommend(histories, top_k=5)
        # model.push_to_hub (the PreTrainedModel route) round-trips as well.
        model = SeqRecForNextItem.from_pretrained({local!r})
        model.push_to_hub("alice/pushed-model")
        again = SeqRecForNextItem.from_pretrained("alice/pushed-model")
        x = torch.tensor([[3, 1, 4, 1, 5]])
        with torch.no_grad():
            out["model_push_identical"] = torch.equal(model(x).logits, again(x).logits)
    """.format(local=str(out), repo=REPO_ID)
    result = _run(_score_code("import hf_seqrec", body), _hub_env(hub, tmp_path / "hf_home"), cwd=work)
    assert result["hub_logits"] == result["local_logits"]  # identical floats, not merely close
    assert result["hub_pipeline"] == result["local_pipeline"]
    assert result["model_push_identical"] is True
    assert all(len(recs) == 5 and [r["rank"] for r in recs] == [1, 2, 3, 4, 5] for recs in result["hub_pipeline"])
    downloads = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    assert any(path.endswith("/item_table.safetensors") for path in downloads)


def test_hub_checkpoint_loads_with_trust_remote_code_without_hf_seqrec(hub, trained, tmp_path):
    out, work = trained
    body = """
        from transformers import pipeline
        recommend = pipeline(model={repo!r}, trust_remote_code=True)
        out["hub_pipeline"] = recommend(histories, top_k=5)
        out["module"] = type(recommend).__module__
    """.format(repo=REPO_ID)
    env = _hub_env(hub, tmp_path / "hf_home")
    env.pop("PYTHONPATH")
    remote = _run(_score_code("", body), env, cwd=tmp_path)
    assert remote["hf_seqrec_imported"] is False
    assert remote["module"].startswith("transformers_modules.")
    local = pipeline("next-item", model=str(out))(HISTORIES, top_k=5)
    assert remote["hub_pipeline"] == json.loads(json.dumps(local))


# ----------------------------------------------------------------------------- the model card
def test_trained_checkpoint_has_a_model_card_with_its_real_metrics(trained):
    out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    readme = (out / "README.md").read_text()
    front, body = _split_front_matter(readme)
    assert front["library_name"] == "hf_seqrec"
    assert front["datasets"] == ["movielens-100k"]
    values = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert values["ndcg_at_10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-6)
    assert values["hr_at_10"] == pytest.approx(metrics["test"]["hr@10"], abs=1e-6)
    lo, hi = metrics["test"]["intervals"]["ndcg@10"]
    assert f"| NDCG@10 | {metrics['test']['ndcg@10']:.4f} | [{lo:.4f}, {hi:.4f}] |" in body
    assert "leave-one-out by timestamp" in body and "first 16 users" in body
    assert 'pipeline("next-item", model="alice/tiny-next-item")' in body
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_card_renders_every_part_from_the_metrics(tmp_path):
    metrics = {
        "protocol": {"split": "leave-one-out by timestamp", "ranking": "full", "metrics": {"hr@K": "1 if rank <= K"},
                     "interval": {"method": "percentile bootstrap", "confidence": 0.95, "n_resamples": 1000, "seed": 0}},
        "validation": {"ndcg@10": 0.07, "hr@10": 0.14, "mrr": 0.05},
        "test": {"ndcg@10": 0.0694, "hr@10": 0.1389, "mrr": 0.0581, "n_users": 943,
                 "intervals": {"ndcg@10": [0.0601, 0.0790], "hr@10": [0.117, 0.161], "mrr": [0.05, 0.066]}},
        "n_items": 1682, "n_users": 943,
        "training": {"best_epoch": 2, "history": [
            {"epoch": 1, "train_loss": 6.61, "validation_ndcg@10": 0.0356},
            {"epoch": 2, "train_loss": 6.02, "validation_ndcg@10": 0.0701},
        ]},
    }
    config = {"backbone": "smollm2-135m", "dataset": "movielens-100k", "use_lora": True, "lora_r": 8, "lora_alpha": 16,
              "lora_target_modules": ["q_proj", "v_proj"], "max_len": 50, "hub_model_id": None}
    (tmp_path / "item_catalog.jsonl").write_text('{"item_id": "50", "text": "Star Wars (1977)"}\n{"item_id": "172", "text": "x"}\n')
    path = write_model_card(tmp_path, metrics, config)
    front, body = _split_front_matter(path.read_text())
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]} == {
        "NDCG@10": 0.0694, "HR@10": 0.1389, "MRR": 0.0581}
    assert "| NDCG@10 | 0.0694 | [0.0601, 0.0790] | 0.0700 |" in body
    assert "| 2 | 6.0200 | 0.0701 |" in body
    assert 'recommend({"history": ["50", "172"]}, top_k=5)' in body
    assert "```yaml\nbackbone: smollm2-135m" in body
    assert "![Training curve" in body and (tmp_path / "training_curve.png").is_file()
    # No history: no plot and no dangling image link.
    metrics["training"]["history"] = []
    text = render_model_card(metrics, config, (REPO_ROOT / "model_cards" / "next_item_model_card.md").read_text(), has_curve=False)
    assert "training_curve.png" not in text and "No per-epoch history" in text


def _split_front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body
