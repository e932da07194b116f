"""`input_mode="id+text"`: the most recent items are read as their item vector followed by their text's tokens.

Checked on the tiny Llama: the expanded layout of a padded batch, hidden states against a sequence
built by hand one user at a time, loss and gradients, save/load, the pipeline, trust_remote_code, a
training run end to end, and the option checks.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import pipeline

from hf_seqrec import SeqRecConfig, SeqRecForNextItem
from hf_seqrec.publishing.model_card import _data_section
from hf_seqrec.modeling.text_inputs import ITEM_TEXT_TOKENS_FILE, ItemTextInputs, tokenize_item_texts
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from testing_utils import REPO, finetune_metrics, run_in_fresh_process

N_TEXT_ITEMS = 2
MAX_TOKENS = 5


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _text_model(catalog, **options):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone(
        "tiny-llama", catalog.texts, max_len=12, input_mode="id+text",
        text_items_in_context=N_TEXT_ITEMS, item_text_max_tokens=MAX_TOKENS, **options,
    )
    model.set_item_text_tokens(catalog.texts, tokenizer)
    model.item_catalog = catalog
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.3)  # a "trained" adapter: scores depend on it, gradients reach lora_A
    return model, tokenizer


@pytest.fixture
def text_model(catalog):
    return _text_model(catalog)


def _padded_batch():
    """Three users, right-padded: 5 items, 1 item, 3 items."""
    items = torch.tensor([[3, 7, 1, 12, 5], [9, 0, 0, 0, 0], [4, 4, 20, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    return items, mask


# ----------------------------------------------------------------------------- layout
def test_layout_places_items_then_the_text_of_the_most_recent_ones():
    inputs = ItemTextInputs(num_items=6, max_tokens=3, items_in_context=2)
    inputs.token_ids = torch.tensor([[10, 11, 12], [20, 0, 0], [30, 31, 0], [40, 41, 42], [0, 0, 0], [50, 51, 52]])
    inputs.lengths = torch.tensor([3, 1, 2, 3, 0, 3])
    inputs.is_set = True
    items = torch.tensor([[0, 1, 2, 3], [5, 4, 0, 0], [1, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    layout = inputs.layout(items, mask)

    # Row 0: items 0 and 1 are old (one position each); item 2 (+2 tokens) and item 3 (+3 tokens) are recent.
    # Row 1: both items are recent; item 4 has an empty text, so it stays one position.
    # Row 2: one recent item with one token.
    assert layout.attention_mask.tolist() == [[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7]
    assert layout.last_positions.tolist() == [[0, 1, 4, 8], [3, 4, 4, 4], [1, 1, 1, 1]]
    # Value rows: items are b * 4 + j (12 of them), then the text tokens in order, then the padding row.
    assert layout.text_token_ids.tolist() == [30, 31, 40, 41, 42, 50, 51, 52, 20]
    padding = 12 + 9
    assert layout.source.tolist() == [
        [0, 1, 2, 12, 13, 3, 14, 15, 16],
        [4, 17, 18, 19, 5, padding, padding, padding, padding],
        [8, 20, padding, padding, padding, padding, padding, padding, padding],
    ]
    # Every real item of row 0 has its own position, and each text token follows its item.
    embeds = torch.arange(3 * 4, dtype=torch.float32).view(3, 4, 1)
    token_embedding = torch.nn.Embedding(60, 1)
    with torch.no_grad():
        token_embedding.weight.copy_(torch.arange(60, dtype=torch.float32).view(60, 1) + 100)
    expanded = inputs.expand(embeds, token_embedding, layout)[..., 0]
    assert expanded[0].tolist() == [0, 1, 2, 130, 131, 3, 140, 141, 142]
    assert expanded[1, :5].tolist() == [4, 150, 151, 152, 5]


def test_text_is_tokenised_without_special_tokens_and_cut_to_max_tokens(catalog, text_model):
    model, tokenizer = text_model
    full = tokenizer(catalog.texts[3], add_special_tokens=False)["input_ids"]
    assert len(full) > MAX_TOKENS
    assert model.item_text_inputs.token_ids[3].tolist() == full[:MAX_TOKENS]
    assert model.item_text_inputs.lengths.tolist() == [MAX_TOKENS] * len(catalog)
    ids, lengths = tokenize_item_texts(["", "ab"], tokenizer, 4)
    assert lengths.tolist() == [0, len(tokenizer("ab", add_special_tokens=False)["input_ids"])]
    assert ids[0].tolist() == [0, 0, 0, 0]


# ----------------------------------------------------------------------------- forward
def _by_hand(model, items: list[int]) -> torch.Tensor:
    """One user's hidden state at each item, from a sequence assembled item by item."""
    table = model.item_table.vectors()
    token_embeddings = model.get_backbone().get_input_embeddings().weight
    rows, last = [], []
    for index, item in enumerate(items):
        rows.append(table[item])
        if index >= len(items) - N_TEXT_ITEMS:
            length = int(model.item_text_inputs.lengths[item])
            rows.extend(token_embeddings[model.item_text_inputs.token_ids[item, :length]])
        last.append(len(rows) - 1)
    hidden = model.backbone(inputs_embeds=torch.stack(rows)[None]).last_hidden_state[0]
    return hidden[last]


def test_hidden_states_are_taken_at_each_item_last_position_as_built_by_hand(text_model):
    model, _ = text_model
    model.eval()
    items, mask = _padded_batch()
    with torch.no_grad():
        out = model(items, mask)
        for row in range(items.size(0)):
            length = int(mask[row].sum())
            expected = _by_hand(model, items[row, :length].tolist())
            torch.testing.assert_close(out.last_hidden_state[row, :length], expected, atol=1e-5, rtol=1e-4)
            # The logits come from the last real item's state (its last text token).
            torch.testing.assert_close(out.logits[row], model.score(expected[-1:])[0], atol=1e-5, rtol=1e-4)


def test_only_the_most_recent_items_are_read_as_text(catalog, text_model):
    model, tokenizer = text_model
    model.eval()
    history = torch.tensor([[3, 7, 1, 12, 5]])
    before = model(history).logits
    # New words for the oldest item (outside the two most recent): nothing it reads changes.
    texts = list(catalog.texts)
    texts[3] = "Something else entirely"
    model.set_item_text_tokens(texts, tokenizer)
    assert torch.equal(model(history).logits, before)
    # New words for the last item: the scores change.
    texts[5] = "Something else entirely"
    model.set_item_text_tokens(texts, tokenizer)
    assert not torch.allclose(model(history).logits, before)


def test_loss_and_logits_shapes_and_the_loss_is_cross_entropy_at_item_states(catalog, text_model):
    model, _ = text_model
    model.eval()
    items, mask = _padded_batch()
    labels = torch.roll(items, -1, dims=1)
    labels[:, -1] = -100
    labels[mask == 0] = -100
    labels[0, -1] = 2
    out = model(items, mask, labels=labels, return_logits=True)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert out.logits.shape == (3, len(catalog))
    assert out.last_hidden_state.shape == (3, 5, model.config.hidden_size)
    labelled = labels != -100
    expected = F.cross_entropy(model.score(out.last_hidden_state[labelled]), labels[labelled])
    torch.testing.assert_close(out.loss, expected)


def test_gradient_reaches_lora_and_item_table_but_not_the_token_embeddings(text_model):
    model, _ = text_model
    model.train()
    items, mask = _padded_batch()
    labels = torch.where(mask.bool(), (items + 1) % model.config.num_items, torch.full_like(items, -100))
    model(items, mask, labels=labels).loss.backward()
    assert model.item_table.weight.grad is not None and model.item_table.weight.grad.abs().sum() > 0
    lora = {name: p for name, p in model.named_parameters() if "lora_" in name}
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for name, p in lora.items() if "lora_A" in name)
    token_embeddings = model.get_backbone().get_input_embeddings().weight
    assert not token_embeddings.requires_grad and token_embeddings.grad is None


def test_forward_without_item_text_tokens_is_a_clear_error(catalog):
    # Built without item texts (from_backbone tokenises them when it is given them).
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", None, num_items=len(catalog), max_len=12, input_mode="id+text")
    with pytest.raises(ValueError, match=r"set_item_text_tokens"):
        model(torch.tensor([[1, 2]]))


def test_appended_items_get_their_text_tokens(catalog, text_model):
    model, tokenizer = text_model
    model.append_item_text_tokens(["A new film (2024) | Drama"], tokenizer)
    expected = tokenizer("A new film (2024) | Drama", add_special_tokens=False)["input_ids"][:MAX_TOKENS]
    assert model.item_text_inputs.num_items == len(catalog) + 1
    assert model.item_text_inputs.token_ids[-1].tolist() == expected


def test_id_mode_models_hold_no_text_and_ignore_the_text_methods(tiny_model, catalog):
    model, tokenizer = tiny_model
    assert model.item_text_inputs is None
    model.set_item_text_tokens(catalog.texts, tokenizer)
    model.append_item_text_tokens(["x"], tokenizer)
    assert model.item_text_inputs is None


# ----------------------------------------------------------------------------- checkpoints and pipeline
@pytest.fixture
def checkpoint(text_model, tmp_path):
    model, tokenizer = text_model
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_save_and_reload_give_identical_logits(text_model, checkpoint):
    model, _ = text_model
    items, mask = _padded_batch()
    assert (checkpoint / ITEM_TEXT_TOKENS_FILE).is_file()
    assert (checkpoint / "text_inputs.py").is_file()  # copied with the model code for trust_remote_code
    config = json.loads((checkpoint / "config.json").read_text())
    assert (config["input_mode"], config["text_items_in_context"], config["item_text_max_tokens"]) == ("id+text", N_TEXT_ITEMS, MAX_TOKENS)
    reloaded = SeqRecForNextItem.from_pretrained(checkpoint)
    assert torch.equal(reloaded.item_text_inputs.token_ids, model.item_text_inputs.token_ids)
    assert torch.equal(reloaded(items, mask).logits, model(items, mask).logits)


def test_a_checkpoint_without_its_text_tokens_is_refused_naming_the_file(checkpoint):
    (checkpoint / ITEM_TEXT_TOKENS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"item_text_tokens\.safetensors: not found"):
        SeqRecForNextItem.from_pretrained(checkpoint)


def test_pipeline_scores_histories_like_the_model(text_model, checkpoint):
    model, _ = text_model
    recommend = pipeline("next-item", model=str(checkpoint))
    history = ["4", "8", "2", "13", "6"]  # catalogue rows 3, 7, 1, 12, 5
    result = recommend({"history": history}, top_k=5, exclude_seen=False)
    expected = model(torch.tensor([[3, 7, 1, 12, 5]])).logits[0]
    top = torch.topk(expected, 5)
    assert [r["item_id"] for r in result] == [str(i + 1) for i in top.indices.tolist()]
    torch.testing.assert_close(torch.tensor([r["score"] for r in result]), top.values)
    batch = recommend([{"history": history}, {"history": ["10"]}], top_k=3)
    assert [len(rows) for rows in batch] == [3, 3]


def test_trust_remote_code_loads_it_without_hf_seqrec(text_model, checkpoint, tmp_path):
    model, _ = text_model
    items, mask = _padded_batch()
    expected = model(items, mask).logits
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        logits = model(torch.tensor({items.tolist()}), torch.tensor({mask.tolist()})).logits.tolist()
        hf_seqrec = sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")
        print("RESULT" + json.dumps({{"logits": logits, "hf_seqrec": hf_seqrec, "module": type(model.item_text_inputs).__module__}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == [] and out["module"].startswith("transformers_modules.")
    torch.testing.assert_close(torch.tensor(out["logits"]), expected.detach())


# ----------------------------------------------------------------------------- training and options
def test_training_run_end_to_end(tmp_path):
    output_dir = tmp_path / "run"
    metrics = finetune_metrics(
        output_dir, "--config", str(REPO / "configs" / "tiny.yaml"),
        "--input_mode", "id+text", "--text_items_in_context", "3", "--item_text_max_tokens", "4",
        "--max_steps", "4", "--checkpoint_every_steps", "0", "--eval_max_users", "40", "--bootstrap_samples", "10",
        "--report_to", "none", "--output_dir", str(output_dir),
    )
    assert 0.0 <= metrics["test"]["ndcg@10"] <= 1.0
    assert (output_dir / ITEM_TEXT_TOKENS_FILE).is_file()
    model = SeqRecForNextItem.from_pretrained(output_dir)
    assert (model.config.input_mode, model.config.text_items_in_context, model.config.item_text_max_tokens) == ("id+text", 3, 4)
    assert model.item_text_inputs.lengths.max() == 4
    card = (output_dir / "README.md").read_text()
    assert "`input_mode: id+text`" in card and "the 3 most recent" in card and "first 4 tokens" in card


def test_model_card_states_the_input_mode():
    text = _data_section({}, {"input_mode": "id+text", "text_items_in_context": 5, "item_text_max_tokens": 16}, "X")
    assert "the 5 most recent ones are each followed by the first 16 tokens" in text
    assert "`input_mode: id`" in _data_section({}, {"input_mode": "id"}, "X")


def test_finetune_options_fill_in_the_text_sizes_and_refuse_bad_combinations():
    config = FinetuneConfig(input_mode="id+text")
    assert (config.text_items_in_context, config.item_text_max_tokens) == (5, 16)
    assert FinetuneConfig(input_mode="id+text", text_items_in_context=2).text_items_in_context == 2
    with pytest.raises(ConfigError, match=r"input_mode: expected 'id' or 'id\+text', got 'text'"):
        FinetuneConfig(input_mode="text")
    for baseline in ("sasrec", "gru4rec", "popularity"):
        with pytest.raises(ConfigError, match=rf"the '{baseline}' baseline has no tokenizer"):
            FinetuneConfig(input_mode="id+text", backbone=baseline)
    with pytest.raises(ConfigError, match=r"text_items_in_context: applies only with --input_mode id\+text"):
        FinetuneConfig(text_items_in_context=3)
    with pytest.raises(ConfigError, match=r"item_text_max_tokens: expected a positive integer, got 0"):
        FinetuneConfig(input_mode="id+text", item_text_max_tokens=0)
    with pytest.raises(ValueError, match=r"input_mode: expected 'id' or 'id\+text', got 'text'"):
        SeqRecConfig(input_mode="text")
    with pytest.raises(ValueError, match=r"text_items_in_context: expected a positive integer, got 0"):
        SeqRecConfig(input_mode="id+text", text_items_in_context=0)
