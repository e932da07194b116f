"""The per-item score offset (`item_score_bias`): popularity at the start, trained, saved, grown with new items."""

from __future__ import annotations

import math

import pytest
import torch

from hf_seqrec.data.prepare import prepare_data
from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.training.config import FinetuneConfig
from hf_seqrec.training.trainer import build_model, build_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def biased_model(catalog):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, item_score_bias=True)
    model.item_catalog = catalog
    return model, tokenizer


def test_offsets_start_at_centred_log_frequency_and_shift_every_score(biased_model, tiny_model):
    model, _ = biased_model
    plain, _ = tiny_model
    assert torch.count_nonzero(model.item_table.bias) == 0  # zero until counts are given: the plain model's scores
    counts = [0] * 30
    counts[4], counts[7], counts[9] = 50, 9, 1
    model.item_table.set_score_bias_from_counts(counts)
    bias = model.item_table.bias.detach()
    assert bias.sum().abs() < 1e-4
    assert bias[4] - bias[7] == pytest.approx(math.log(51 / 10), rel=1e-5)
    assert bias[9] - bias[0] == pytest.approx(math.log(2), rel=1e-5)
    model.eval(), plain.eval()
    history = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        difference = model(history).logits - plain(history).logits
    assert torch.allclose(difference, bias.unsqueeze(0), atol=1e-4)
    with pytest.raises(ValueError, match="got 3 item counts for an item table of 30 rows"):
        model.item_table.set_score_bias_from_counts([1, 2, 3])


def test_offsets_are_trained_with_the_item_table_and_without_weight_decay(biased_model):
    model, _ = biased_model
    model.train()
    inputs, labels = torch.randint(0, 30, (4, 8)), torch.randint(0, 30, (4, 8))
    model(inputs, labels=labels).loss.backward()
    gradient = model.item_table.bias.grad
    # Softmax cross-entropy: each position adds (probability - one-hot), so the offsets' gradient sums to zero.
    assert gradient.abs().sum() > 0 and gradient.sum().abs() < 1e-5
    optimizer = build_optimizer(model, FinetuneConfig(backbone="tiny-llama", item_table_learning_rate=0.01, weight_decay=0.1))
    group = next(g for g in optimizer.param_groups if any(p is model.item_table.bias for p in g["params"]))
    assert group["lr"] == 0.01 and group["weight_decay"] == 0.0


def test_offsets_survive_save_and_load_and_new_items_get_the_expected_share_of_an_unknown_item(biased_model, tmp_path):
    model, tokenizer = biased_model
    model.item_table.set_score_bias_from_counts(list(range(30)))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = SeqRecForNextItem.from_pretrained(tmp_path)
    assert loaded.config.item_score_bias
    assert torch.equal(loaded.item_table.bias, model.item_table.bias)
    loaded.add_items([{"item_id": "new", "text": "A film nobody has watched (2025) | Drama"}])
    bias = loaded.item_table.score_bias().detach()
    offsets = model.item_table.bias.detach()
    # Above the mean offset: a random catalogue item's expected probability mass is mean(exp(offset)).
    expected = math.log(float(offsets.exp().mean()))
    assert bias.shape == (31,) and bias[30] == pytest.approx(expected, abs=1e-5) and bias[30] > offsets.mean() + 0.1


def test_with_a_text_tower_items_without_an_id_take_the_offset_of_an_unknown_item(catalog):
    model, _ = SeqRecForNextItem.from_backbone(
        "tiny-llama", catalog.texts, max_len=12, item_text_tower=True, item_id_dropout=0.5, item_score_bias=True
    )
    model.item_table.set_score_bias_from_counts([3 * i for i in range(30)])
    model.item_table.set_items_with_id_embedding(range(20))
    bias = model.item_table.score_bias()
    trained = model.item_table.bias[:20]
    unknown = torch.logsumexp(trained, 0) - math.log(20)
    assert torch.allclose(bias[:20], trained) and torch.allclose(bias[20:], unknown.expand(10))
    model.train()
    model(torch.randint(0, 20, (4, 8)), labels=torch.randint(0, 30, (4, 8))).loss.backward()
    assert model.item_table.bias.grad[20:].abs().sum() == 0  # stand-ins train nothing


def test_training_starts_the_offsets_from_movielens_training_counts():
    config = FinetuneConfig(backbone="tiny-llama", max_len=20, item_score_bias=True)
    prepared = prepare_data(config.data_config())
    model, _ = build_model(config, prepared)
    counts = torch.zeros(len(prepared.catalog))
    for items in prepared.splits["train"]["items"]:
        counts.index_add_(0, torch.tensor(items), torch.ones(len(items)))
    most, least = int(counts.argmax()), int(counts.argmin())
    bias = model.item_table.bias.detach()
    assert bias[most] - bias[least] == pytest.approx(math.log((counts[most] + 1) / (counts[least] + 1)), rel=1e-4)
    assert torch.equal(torch.argsort(bias, stable=True), torch.argsort(torch.log(counts + 1), stable=True))


@pytest.fixture
def dropout_model(catalog):
    """Text tower with ID dropout and offsets; items 0-19 have ID embeddings, 20-29 do not."""
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone(
        "tiny-llama", catalog.texts, max_len=12, item_text_tower=True, item_id_dropout=0.5, item_score_bias=True
    )
    table = model.item_table
    table.set_score_bias_from_counts([3 * i for i in range(30)])
    table.set_items_with_id_embedding(range(20))
    with torch.no_grad():
        table.weight.normal_()  # distinct ID embeddings, so a dropped one shows in the vectors
    return model


def test_an_item_whose_id_is_dropped_takes_the_unknown_offset_in_the_same_pass(dropout_model):
    table = dropout_model.item_table
    dropout_model.eval()
    with_ids = table.vectors()
    text_only = with_ids - table.weight * table.has_id_embedding.unsqueeze(1)
    unknown = torch.logsumexp(table.bias[:20], 0) - math.log(20)  # from every item with an ID, dropped or not
    dropout_model.train()
    torch.manual_seed(3)
    vectors, offsets = table.vectors_and_offsets()
    dropped = torch.isclose(vectors, text_only, atol=1e-6).all(dim=1)[:20]
    kept = torch.isclose(vectors, with_ids, atol=1e-6).all(dim=1)[:20]
    assert bool((dropped ^ kept).all()) and 3 <= int(dropped.sum()) <= 17
    assert torch.allclose(offsets[:20][dropped], unknown.expand(int(dropped.sum())))
    assert torch.equal(offsets[:20][kept], table.bias[:20][kept])
    assert torch.allclose(offsets[20:], unknown.expand(10))  # never had an ID: unknown as always
    dropout_model.eval()
    assert torch.equal(table.vectors_and_offsets()[1], table.score_bias())  # no dropout outside training


def test_a_training_step_drops_an_items_id_and_offset_together(dropout_model):
    """Within one forward pass the dropped items get neither an ID nor an offset gradient, the kept ones both."""
    dropout_model.train()
    torch.manual_seed(3)
    dropout_model(torch.randint(0, 20, (4, 8)), labels=torch.randint(0, 30, (4, 8))).loss.backward()
    table = dropout_model.item_table
    id_trained = table.weight.grad[:20].abs().sum(dim=1) > 0
    offset_trained = table.bias.grad[:20] != 0
    assert 0 < int(id_trained.sum()) < 20  # some IDs dropped, some kept in this pass
    assert torch.equal(offset_trained, id_trained)
