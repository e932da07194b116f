"""SVAE as a backbone of `SeqRecForNextItem`: its KL term and the annealing of its weight, deterministic
evaluation, learning, checkpoints, the pipeline and remote code, an exact resume, and its options' checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, pipeline

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.modeling.baselines import SVAEConfig, SVAEModel, baseline_backbone_config
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from hf_seqrec.training.trainer import train
from testing_utils import REPO, numbered_catalog, pattern_batch, run_finetune, run_in_fresh_process, script_env

NUM_ITEMS = 30
CAP = 0.2
ANNEAL_STEPS = 100

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _svae(**options) -> SeqRecForNextItem:
    """A seeded SVAE recommender over NUM_ITEMS items (hidden 32, latent 16, annealed over ANNEAL_STEPS steps)."""
    torch.manual_seed(0)
    backbone_options = {"hidden_size": 32, "latent_size": 16, "kl_anneal_steps": ANNEAL_STEPS, **options}
    model, tokenizer = SeqRecForNextItem.from_backbone("svae", num_items=NUM_ITEMS, max_len=12, backbone_options=backbone_options)
    assert tokenizer is None and isinstance(model.get_backbone(), SVAEModel)
    return model


def _train(model: SeqRecForNextItem, steps: int) -> list[float]:
    """`steps` Adam steps on the pattern, each told its step count as the training loop does; the losses."""
    items, mask, labels = pattern_batch(NUM_ITEMS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for step in range(steps):
        loss = model(items, mask, labels=labels, training_step=step).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# ----------------------------------------------------------------------------- the KL term and its weight
def test_svae_backbone_is_registered_and_gives_a_kl_divergence_per_position():
    config = AutoConfig.for_model("seqrec_svae", hidden_size=16, latent_size=8, latent_decoder="linear")
    assert type(config) is SVAEConfig
    backbone = AutoModel.from_config(config)
    assert type(backbone) is SVAEModel and isinstance(backbone.decoder, torch.nn.Linear)
    output = backbone(inputs_embeds=torch.randn(2, 5, 16), attention_mask=torch.ones(2, 5))
    assert output.last_hidden_state.shape == (2, 5, 16) and output.kl.shape == (2, 5)
    assert (output.kl > 0).all()  # a freshly initialised posterior is not the prior
    tanh = baseline_backbone_config("svae")  # the paper's decoder and settings by default
    assert (tanh.latent_size, tanh.kl_anneal_cap, tanh.kl_anneal_steps, tanh.latent_decoder) == (64, CAP, 2000, "tanh")


def test_kl_term_is_positive_in_training_and_weighted_by_the_annealing_schedule():
    model = _svae()
    backbone = model.get_backbone()
    weights = [backbone.kl_weight(step) for step in (0, 25, 50, ANNEAL_STEPS, 10 * ANNEAL_STEPS)]
    assert weights == pytest.approx([0.0, 0.25 * CAP, 0.5 * CAP, CAP, CAP])
    assert backbone.kl_weight(None) == CAP  # called from outside the training loop: the objective annealing ends at

    items, mask, labels = pattern_batch(NUM_ITEMS)
    labelled = labels != -100
    model.train()
    outputs = {}
    for step in (0, 50, ANNEAL_STEPS, 5 * ANNEAL_STEPS):
        torch.manual_seed(1)  # the same dropout masks and latent samples at every step count
        outputs[step] = model(items, mask, labels=labels, training_step=step)
    kl = outputs[0].kl
    assert kl.item() > 0
    assert all(torch.equal(output.kl, kl) for output in outputs.values())
    hidden = outputs[0].last_hidden_state
    cross_entropy = F.cross_entropy(model.score(hidden[labelled]), labels[labelled])
    assert outputs[0].loss.item() == pytest.approx(cross_entropy.item(), rel=1e-6)  # beta = 0 at step 0
    assert outputs[50].loss.item() == pytest.approx((cross_entropy + 0.5 * CAP * kl).item(), rel=1e-6)
    for step in (ANNEAL_STEPS, 5 * ANNEAL_STEPS):
        assert outputs[step].loss.item() == pytest.approx((cross_entropy + CAP * kl).item(), rel=1e-6)

    # The KL term trains the posterior: at the cap it adds a gradient to the mean and log-variance layer.
    grads = []
    for step in (0, ANNEAL_STEPS):
        torch.manual_seed(1)
        model.zero_grad()
        model(items, mask, labels=labels, training_step=step).loss.backward()
        grads.append(backbone.latent.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_without_annealing_the_cap_applies_from_the_first_step():
    backbone = _svae(kl_anneal_steps=0, kl_anneal_cap=0.5).get_backbone()
    assert backbone.kl_weight(0) == backbone.kl_weight(1000) == 0.5


def test_the_training_loop_anneals_by_its_optimizer_steps_not_its_micro_batches(tmp_path, monkeypatch):
    seen: list[int | None] = []
    kl_weight = SVAEModel.kl_weight

    def recording_kl_weight(self, training_step):
        seen.append(training_step)
        return kl_weight(self, training_step)

    monkeypatch.setattr(SVAEModel, "kl_weight", recording_kl_weight)
    config = FinetuneConfig(
        dataset="movielens-100k", backbone="svae", hidden_size=16, latent_size=8, max_len=20, batch_size=16,
        gradient_accumulation_steps=2, num_epochs=1, max_steps=3, checkpoint_every_steps=0, eval_max_users=20,
        bootstrap_samples=10, report_to=None, output_dir=str(tmp_path / "run"),
    )
    train(config)
    assert seen == [0, 0, 1, 1, 2, 2]  # two micro-batches per optimizer step, each told the steps taken before it


# ----------------------------------------------------------------------------- evaluation and learning
def test_evaluation_scores_the_mean_latent_so_it_is_deterministic():
    model = _svae(dropout=0.0)  # no dropout: in training only the latent's sampling can vary the scores
    items, mask, _ = pattern_batch(NUM_ITEMS)
    with torch.no_grad():
        model.eval()
        first = model(items, mask).logits
        torch.manual_seed(123)
        assert torch.equal(model(items, mask).logits, first)
        model.train()
        sampled = [model(items, mask, return_logits=True).logits for _ in range(2)]
    assert not torch.equal(sampled[0], sampled[1])


def test_short_training_learns_the_pattern_far_better_than_random():
    model = _svae()
    items, mask, labels = pattern_batch(NUM_ITEMS)
    labelled = labels != -100

    def top1_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            hidden = model(items, mask, labels=labels).last_hidden_state
            return (model.score(hidden[labelled]).argmax(dim=-1) == labels[labelled]).float().mean().item()

    before = top1_accuracy()
    losses = _train(model, 60)
    assert losses[-1] < 0.7 * losses[0], losses
    after = top1_accuracy()
    assert before < 0.2 and after > 0.6, (before, after)  # random guessing: 1 / 30


# ----------------------------------------------------------------------------- checkpoints, pipeline, remote code
def test_checkpoint_pipeline_and_remote_code_score_like_the_trained_model(tmp_path):
    model = _svae(latent_decoder="linear")
    _train(model, 10)
    catalog = numbered_catalog(NUM_ITEMS)
    model.item_catalog = catalog
    model.eval()
    items, mask, _ = pattern_batch(NUM_ITEMS)
    with torch.no_grad():
        expected = model(items, mask).logits
    model.save_pretrained(tmp_path)
    assert {"backbone.safetensors", "baselines.py", "modeling_seqrec.py"} <= {p.name for p in tmp_path.iterdir()}

    reloaded = SeqRecForNextItem.from_pretrained(tmp_path)
    assert reloaded.get_backbone().config.to_dict() == model.get_backbone().config.to_dict()
    with torch.no_grad():
        assert torch.equal(reloaded(items, mask).logits, expected)

    history = [3, 4, 5, 6]
    with torch.no_grad():
        logits = model(torch.tensor([history])).logits[0]
    recommend = pipeline("next-item", model=str(tmp_path))
    results = recommend({"history": [catalog.item_ids[row] for row in history]}, top_k=NUM_ITEMS)
    assert len(results) == NUM_ITEMS - len(history)  # the history itself is not recommended
    for result in results:
        assert result["score"] == logits[catalog.item_ids.index(result["item_id"])].item()

    # The checkpoint's own code rebuilds the SVAE backbone where hf_seqrec is never imported.
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        items, mask = torch.tensor({items.tolist()}), torch.tensor({mask.tolist()})
        print("RESULT" + json.dumps({{"logits": model(items, mask).logits.tolist(), "backbone": type(model.backbone).__module__,
              "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path, base_env=script_env(), PYTHONPATH="")
    assert out["hf_seqrec"] == [] and out["backbone"].startswith("transformers_modules.")
    assert torch.allclose(torch.tensor(out["logits"]), expected, atol=1e-6)


# ----------------------------------------------------------------------------- an exact resume through scripts/finetune.py
RUN = [
    "--dataset", "movielens-100k", "--backbone", "svae", "--hidden_size", "16", "--latent_size", "8", "--max_len", "50",
    "--batch_size", "16", "--num_epochs", "1", "--max_steps", "48", "--kl_anneal_steps", "24",
    "--checkpoint_every_steps", "6", "--eval_max_users", "120", "--bootstrap_samples", "50", "--report_to", "none",
]


def _scores(output_dir: Path) -> dict:
    """The parts of metrics.json that must not depend on timing."""
    metrics = json.loads((output_dir / "metrics.json").read_text())
    return {"validation": metrics["validation"], "test": metrics["test"], "history": metrics["training"]["history"]}


def _global_step(state_file: Path) -> int:
    """The optimizer steps a saved training state records (0 while none is readable)."""
    try:
        return json.loads(state_file.read_text())["global_step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_a_killed_and_resumed_run_anneals_and_ends_exactly_as_an_uninterrupted_one(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    done = run_finetune(*RUN, "--output_dir", str(uninterrupted))
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    command = [sys.executable, str(REPO / "scripts" / "finetune.py"), *RUN, "--output_dir", str(killed)]
    process = subprocess.Popen(command, cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = killed / "checkpoints" / "last" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and _global_step(state_file) < 6:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = _global_step(state_file)
    assert 0 < killed_at < 24  # the KL weight was still rising when the run died

    resumed = run_finetune(*RUN, "--output_dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _scores(killed) == _scores(uninterrupted)
    assert (killed / "backbone.safetensors").read_bytes() == (uninterrupted / "backbone.safetensors").read_bytes()


# ----------------------------------------------------------------------------- options
def test_the_svae_config_fills_in_its_options():
    config = FinetuneConfig.from_yaml(REPO / "configs" / "svae.yaml")
    assert (config.backbone, config.hidden_size, config.latent_size, config.latent_decoder) == ("svae", 64, 64, "tanh")
    assert (config.kl_anneal_cap, config.max_len, config.batch_size, config.learning_rate) == (CAP, 200, 64, 1e-3)
    assert not config.use_lora and not config.item_text_init and config.early_stopping_patience
    defaults = FinetuneConfig(backbone="svae")
    assert (defaults.latent_size, defaults.kl_anneal_cap, defaults.kl_anneal_steps, defaults.latent_decoder) == (64, CAP, 2000, "tanh")
    assert FinetuneConfig(backbone="gru4rec").latent_size is None  # other baselines have no latent


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latent_size": 0}, r"latent_size: expected a positive integer, got 0"),
        ({"kl_anneal_cap": -0.1}, r"kl_anneal_cap: expected a non-negative number .*got -0\.1"),
        ({"kl_anneal_cap": "inf"}, r"kl_anneal_cap: expected a non-negative number .*got inf"),
        ({"kl_anneal_steps": -5}, r"kl_anneal_steps: expected a non-negative number of optimizer steps .*got -5"),
        ({"kl_anneal_steps": "many"}, r"kl_anneal_steps: expected an integer, got 'many'"),
        ({"latent_decoder": "relu"}, r"latent_decoder: expected one of tanh, linear, got 'relu'"),
        ({"backbone": "gru4rec", "latent_size": 8}, r"latent_size: applies to the svae backbone only, not 'gru4rec'"),
        ({"backbone": "tiny-llama", "kl_anneal_steps": 10}, r"kl_anneal_steps: apply only to the from-scratch baselines"),
    ],
)
def test_a_bad_option_is_refused_naming_it_and_what_was_expected(options, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**{"backbone": "svae", **options})


def test_the_model_and_its_config_refuse_bad_options_too():
    with pytest.raises(ValueError, match=r"latent_size: expected a positive integer, got 0"):
        SeqRecForNextItem.from_backbone("svae", num_items=NUM_ITEMS, backbone_options={"latent_size": 0})
    with pytest.raises(ValueError, match=r"latent_decoder: expected one of tanh, linear, got 'gelu'"):
        SVAEConfig(latent_decoder="gelu")  # e.g. an edited checkpoint's config.json
