"""Item text: contextual encodings, the bounded-delta and null-space text towers, popularity from text.

What a cold item relies on: its text encoding must not depend on when or with what it was encoded
(training catalogue vs `add_items`, batch neighbours, a reload in a process without hf_seqrec), and
the designs must keep their geometric promises (bounded deltas; deltas orthogonal to the text).
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch

from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.modeling.item_table import unknown_item_offset
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from testing_utils import run_in_fresh_process

HISTORY = torch.tensor([[3, 7, 1, 12, 5]])
NEW_ITEMS = [{"item_id": "new-1", "text": "Film number 7 (1987) | Comedy"}, {"item_id": "new-2", "text": "A brand new title | Horror"}]


def _model(catalog, **options):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, **options)
    model.item_catalog = catalog
    return model, tokenizer


@pytest.mark.parametrize("encoder", ["mean-pooled", "last-token"])
def test_contextual_encoding_of_a_text_does_not_depend_on_its_batch(catalog, encoder, one_torch_thread):
    model, tokenizer = _model(catalog, item_text_encoder=encoder, item_text_prompt="Item: {text}")
    together = model.encode_item_texts(catalog.texts, tokenizer)
    alone = torch.cat([model.encode_item_texts([text], tokenizer) for text in catalog.texts[:5]])
    torch.testing.assert_close(together[:5], alone, atol=1e-5, rtol=1e-5)
    # Rescaled to the input embeddings' mean norm, and different texts give different vectors.
    expected_norm = model.get_backbone().get_input_embeddings().weight.norm(dim=1).mean()
    torch.testing.assert_close(together.norm(dim=1), expected_norm.expand(len(catalog.texts)), atol=1e-4, rtol=1e-4)
    assert torch.cdist(together, together).triu(1)[torch.triu(torch.ones(30, 30), 1).bool()].min() > 1e-3


def test_contextual_encoding_reads_the_words_in_context_and_the_prompt(catalog, one_torch_thread):
    model, tokenizer = _model(catalog, item_text_encoder="mean-pooled")
    base = model.encode_item_texts(["Toy Story", "Story Toy"], tokenizer)
    # Mean token embeddings cannot tell a reordering apart; the decoder reads order.
    assert not torch.allclose(base[0], base[1], atol=1e-4)
    model.config.item_text_prompt = "Movie title: {text}"
    assert not torch.allclose(model.encode_item_texts(["Toy Story"], tokenizer)[0], base[0], atol=1e-4)


def test_encoding_ignores_the_trained_adapter(catalog, one_torch_thread):
    """The frozen pretrained decoder reads the text: LoRA weights learned since do not change encodings."""
    model, tokenizer = _model(catalog, item_text_encoder="mean-pooled")
    before = model.encode_item_texts(catalog.texts[:4], tokenizer)
    with torch.no_grad():
        for name, parameter in model.backbone.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    assert not torch.allclose(model(HISTORY).logits, _model(catalog, item_text_encoder="mean-pooled")[0](HISTORY).logits)
    torch.testing.assert_close(model.encode_item_texts(catalog.texts[:4], tokenizer), before)
    assert model.backbone.training == model.training  # the encoder restores the mode it found
    # Once the adapter is merged into the weights it can no longer be switched off: the pretrained decoder reads.
    model.merge_adapter()
    torch.testing.assert_close(model.encode_item_texts(catalog.texts[:4], tokenizer), before, atol=1e-5, rtol=1e-5)


def test_text_encoder_depth_is_recorded_and_may_differ_from_the_backbone(catalog, one_torch_thread):
    shallow, tokenizer = _model(catalog, item_text_encoder="mean-pooled", backbone_layers=1)
    assert shallow.config.item_text_encoder_layers == 1
    deep, _ = _model(catalog, item_text_encoder="mean-pooled", backbone_layers=1, item_text_encoder_layers=2)
    assert deep.config.item_text_encoder_layers == 2
    shallow_encodings = shallow.encode_item_texts(catalog.texts, tokenizer)
    assert not torch.allclose(shallow_encodings, deep.encode_item_texts(catalog.texts, tokenizer), atol=1e-4)
    with pytest.raises(ValueError, match=r"item_text_encoder_layers: expected a number of layers in 1\.\.2"):
        _model(catalog, item_text_encoder="mean-pooled", backbone_layers=1, item_text_encoder_layers=5)


@pytest.mark.parametrize("design", ["projection", "bounded-delta", "null-space"])
def test_added_item_is_encoded_as_if_it_had_been_in_the_training_catalogue(catalog, design, tmp_path, one_torch_thread):
    options = {"item_text_tower": True, "item_text_design": design, "item_text_encoder": "mean-pooled"}
    model, tokenizer = _model(catalog, **options)
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    reloaded = SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(reloaded(HISTORY).logits, model(HISTORY).logits)
    rows = reloaded.add_items(NEW_ITEMS)
    assert rows == [30, 31]
    # The same texts encoded with the training catalogue by a fresh model give the same features.
    bigger = ItemCatalog(catalog.item_ids + ["new-1", "new-2"], catalog.texts + [item["text"] for item in NEW_ITEMS])
    fresh, _ = _model(bigger, **options)
    torch.testing.assert_close(reloaded.item_table.text_features[30:], fresh.item_table.text_features[30:], atol=1e-5, rtol=1e-5)
    assert reloaded.item_table.has_id_embedding[30:].eq(0).all()


def test_bounded_deltas_keep_every_item_near_its_content_and_cold_items_on_it(catalog, one_torch_thread):
    model, _ = _model(catalog, item_text_tower=True, item_text_design="bounded-delta", item_delta_max=0.5)
    table = model.item_table
    table.set_items_with_id_embedding(range(20))  # items 20..29 are cold
    with torch.no_grad():
        table.weight.normal_(std=10.0)  # far beyond the bound
        content = table.content_vectors()
        vectors = table.vectors()
    assert torch.allclose(content.norm(dim=1), table.content_norm.expand(30), rtol=1e-5)
    drift = (vectors - content).norm(dim=1) / table.content_norm
    assert drift[:20].max() <= 0.5 + 1e-5 and drift[:20].min() > 0.49  # clipped to the bound
    torch.testing.assert_close(vectors[20:], content[20:])  # a cold item is its content vector
    cosine = torch.nn.functional.cosine_similarity(vectors, content, dim=1)
    assert cosine.min() >= math.sqrt(1 - 0.5**2) - 1e-5
    # Gradients reach the deltas of warm items only.
    model.train()
    model.item_table.id_dropout = 0.0
    model(HISTORY, labels=HISTORY).loss.backward()
    assert table.weight.grad[:20].abs().sum() > 0 and table.weight.grad[20:].abs().sum() == 0


def test_null_space_deltas_leave_the_text_subspace_alone(catalog, one_torch_thread):
    model, _ = _model(catalog, item_text_tower=True, item_text_design="null-space", item_delta_max=None, item_semantic_variance=0.5)
    table = model.item_table
    kept = int(table.semantic_mask.sum())  # the text's directions, set from its encodings; the ID deltas get the rest
    assert 0 < kept < table.weight.size(1)
    with torch.no_grad():
        table.weight.normal_()
        change = table.vectors() - table.content_vectors()
    semantic = table.text_basis[:, :kept]
    assert (change @ semantic).abs().max() < 1e-4 * change.abs().max()  # deltas only in the null space
    assert (table.content_vectors() @ table.text_basis[:, kept:]).abs().max() < 1e-4  # text only in its subspace
    assert change.norm(dim=1).min() > 0


def test_text_popularity_scores_cold_items_from_their_text_and_trains_through_dropped_ids(catalog, one_torch_thread):
    model, _ = _model(
        catalog, item_text_tower=True, item_text_design="bounded-delta", item_score_bias=True, item_text_popularity=True, item_id_dropout=0.5
    )
    table = model.item_table
    counts = [0] * 5 + [i for i in range(1, 26)]
    table.set_score_bias_from_counts(counts)
    table.set_items_with_id_embedding([i for i, count in enumerate(counts) if count])
    offsets = table.score_bias().detach()
    with torch.no_grad():
        standardised = (table.text_features - table.text_mean) / table.text_scale
        predicted = table.text_offset(standardised).squeeze(-1)
    # Cold items take the prediction; it starts as a ridge fit of the known offsets on the text,
    # centred where an item of unknown popularity sits.
    torch.testing.assert_close(offsets[:5], predicted[:5])
    assert offsets[:5].std() > 0
    known_offsets = table.bias.detach()[5:]
    torch.testing.assert_close(predicted[5:].mean(), unknown_item_offset(known_offsets), atol=1e-4, rtol=1e-4)
    assert torch.corrcoef(torch.stack([predicted[5:], known_offsets]))[0, 1] > 0.3
    model.train()
    torch.manual_seed(1)
    model(HISTORY, labels=HISTORY).loss.backward()
    assert table.text_offset.weight.grad.abs().sum() > 0


def test_designs_and_encoders_round_trip_through_trust_remote_code_without_hf_seqrec(catalog, tmp_path):
    model, tokenizer = _model(
        catalog,
        item_text_tower=True,
        item_text_design="null-space",
        item_text_encoder="last-token",
        item_text_prompt="Item: {text}",
        item_score_bias=True,
        item_text_popularity=True,
    )
    model.item_table.set_score_bias_from_counts(list(range(30)))
    model.eval()
    expected = model(HISTORY).logits[0].tolist()
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "text_encoding.py").is_file()
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["item_text_encoder"] == "last-token" and config["item_text_encoder_layers"] == 2
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True).eval()
        logits = model(torch.tensor({HISTORY.tolist()})).logits[0].tolist()
        hf_seqrec = sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")
        print("RESULT" + json.dumps({{"logits": logits, "hf_seqrec": hf_seqrec}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == []
    torch.testing.assert_close(torch.tensor(out["logits"]), torch.tensor(expected))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"item_text_design": "bounded-delta"}, "applies only with item_text_tower"),
        ({"item_text_tower": True, "item_text_design": "sideways"}, "item_text_design: expected one of"),
        ({"item_text_tower": True, "item_text_popularity": True}, "item_text_popularity: needs"),
        ({"item_text_encoder": "mean-pooled", "backbone": "sasrec"}, "item_text_encoder: item text is encoded only"),
        ({"item_text_prompt": "no field here"}, "item_text_prompt must be a template"),
        ({"item_text_tower": True, "item_text_design": "bounded-delta", "item_delta_max": None}, "item_delta_max: the bounded-delta design needs"),
        ({"item_text_encoder": "cls"}, "item_text_encoder: expected one of"),
    ],
)
def test_bad_text_options_are_refused_naming_the_option(options, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneConfig(**options)


def test_model_card_says_how_item_text_was_encoded_and_used():
    from dataclasses import asdict

    from hf_seqrec.publishing.model_card import _data_section

    config = asdict(
        FinetuneConfig(
            item_text_tower=True,
            item_text_design="bounded-delta",
            item_delta_max=0.2,
            item_score_bias=True,
            item_text_popularity=True,
            item_text_encoder="mean-pooled",
            item_text_encoder_layers=30,
            item_text_prompt="Movie: {text}",
        )
    )
    section = _data_section({}, config, "MovieLens-100K")
    assert "first 30 pretrained decoder layers (LoRA off) read the text" in section
    assert "wrapped in `Movie: {text}`" in section
    assert "Text tower (`bounded-delta`)" in section and "at most 0.2 of it" in section
    assert "score offset predicted from their text" in section
    plain = _data_section({}, asdict(FinetuneConfig()), "MovieLens-100K")
    assert "`token-embeddings`" in plain and "Text tower" not in plain


@pytest.mark.parametrize("design", ["projection", "bounded-delta"])
def test_items_training_never_sees_are_left_out_of_the_training_loss_but_scored_at_inference(catalog, design, one_torch_thread):
    model, _ = _model(catalog, item_text_tower=True, item_text_design=design, item_id_dropout=0.0)
    table = model.item_table
    table.set_items_with_id_embedding(range(25))  # items 25..29 never appear in training
    model.eval()
    labels = torch.tensor([[7, 1, 12, 5, 9]])
    before = model(HISTORY, labels=labels, return_logits=True)
    with torch.no_grad():
        table.text_features[25:] = table.text_features[25:].flip(1) * 3.0  # move only the untrained items
        table.refresh_derived_text_buffers()
    after = model(HISTORY, labels=labels, return_logits=True)
    torch.testing.assert_close(after.loss, before.loss)  # they take no part in the loss...
    assert not torch.allclose(after.logits[:, 25:], before.logits[:, 25:])  # ...but are ranked at inference
    assert torch.isfinite(after.logits).all()
