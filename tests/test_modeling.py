"""SeqRecForNextItem on the tiny Llama: initialisation, loss, LoRA, save/load and merge."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

from hf_seqrec import SeqRecConfig, SeqRecForNextItem
from hf_seqrec.modeling import load_backbone
from testing_utils import remove_one_weight


def _batch(num_items: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(0, num_items, (4, 9), generator=generator)
    attention_mask = torch.ones_like(items)
    attention_mask[1, 6:] = 0
    attention_mask[3, 2:] = 0
    labels = torch.roll(items, -1, dims=1)
    labels[:, -1] = -100
    labels[attention_mask == 0] = -100
    return items, attention_mask, labels


def test_item_table_starts_from_mean_token_embedding_of_item_text(tiny_model, catalog):
    model, tokenizer = tiny_model
    token_embeddings = model.get_backbone().get_input_embeddings().weight
    for row in (0, 7, 29):
        ids = tokenizer(catalog.texts[row], add_special_tokens=False)["input_ids"]
        assert torch.allclose(model.item_table.weight[row], token_embeddings[ids].mean(0))
    # Distinct texts give distinct rows: the table is not a constant.
    assert not torch.allclose(model.item_table.weight[0], model.item_table.weight[1])


def test_lora_starts_as_identity_and_trains_only_adapter_and_item_table(tiny_model, catalog):
    model, _ = tiny_model
    plain, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, use_lora=False)
    items, mask, _ = _batch(len(catalog))
    model.eval(), plain.eval()
    assert torch.allclose(model(items, mask).logits, plain(items, mask).logits, atol=1e-6)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "item_table.weight" in trainable
    assert all("lora_" in n or n == "item_table.weight" for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable)


def test_loss_is_full_catalogue_cross_entropy_over_labelled_positions(tiny_model, catalog):
    model, _ = tiny_model
    model.eval()
    items, mask, labels = _batch(len(catalog))
    out = model(items, mask, labels=labels, return_logits=False)
    hidden = out.last_hidden_state
    labelled = labels != -100
    logits = hidden[labelled] @ model.item_table.weight.T
    assert logits.shape[-1] == len(catalog)
    assert torch.allclose(out.loss, F.cross_entropy(logits, labels[labelled]), atol=1e-6)
    # An explicit denominator (what multi-process training passes) rescales the summed loss.
    half = model(items, mask, labels=labels, num_items_in_batch=2 * labelled.sum()).loss
    assert torch.allclose(half * 2, out.loss, atol=1e-6)


def test_logits_come_from_each_sequence_last_real_item(tiny_model, catalog):
    model, _ = tiny_model
    model.eval()
    items, mask, _ = _batch(len(catalog))
    logits = model(items, mask).logits
    alone = model(items[1:2, :6], mask[1:2, :6]).logits
    assert logits.shape == (4, len(catalog))
    assert torch.allclose(logits[1], alone[0], atol=1e-5)


def test_save_and_reload_give_identical_scores_without_backbone_weights(tiny_model, catalog, tmp_path):
    model, _ = tiny_model
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()  # a trained adapter, so reloading it is really checked
    model.eval()
    items, mask, _ = _batch(len(catalog))
    expected = model(items, mask).logits
    model.save_pretrained(tmp_path)

    files = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "adapter_model.safetensors", "seqrec_adapter_config.json", "item_table.safetensors", "item_catalog.jsonl"} <= files
    adapter_keys = load_file(tmp_path / "adapter_model.safetensors").keys()
    assert adapter_keys and all("lora_" in k for k in adapter_keys)
    assert "backbone.safetensors" not in files
    # peft's own adapter_config.json name would make transformers load the repo as a bare adapter.
    assert "adapter_config.json" not in files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "seqrec" and config["backbone_name_or_path"] == "tiny-llama"

    reloaded = SeqRecForNextItem.from_pretrained(tmp_path)
    assert torch.equal(reloaded(items, mask).logits, expected)
    assert reloaded.item_catalog.item_ids == catalog.item_ids
    auto = AutoModel.from_pretrained(tmp_path)
    assert isinstance(auto, SeqRecForNextItem)
    assert torch.equal(auto(items, mask).logits, expected)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SeqRecConfig)


def test_an_adapter_file_that_lacks_lora_weights_is_refused_naming_the_file(tiny_model, tmp_path):
    model, _ = tiny_model
    model.save_pretrained(tmp_path)
    left_out, _ = remove_one_weight(tmp_path / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors: adapter weights do not fit the backbone: 1 weights missing") as caught:
        SeqRecForNextItem.from_pretrained(tmp_path)
    assert left_out.replace(".weight", "") in str(caught.value)  # peft names it with its adapter name inserted


def test_merged_model_is_standalone_and_scores_the_same(tiny_model, catalog, tmp_path):
    model, _ = tiny_model
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    model.eval()
    items, mask, _ = _batch(len(catalog))
    expected = model(items, mask).logits
    model.merge_adapter().save_pretrained(tmp_path)
    assert (tmp_path / "backbone.safetensors").is_file()
    assert not (tmp_path / "adapter_model.safetensors").exists()
    merged = SeqRecForNextItem.from_pretrained(tmp_path)
    assert not merged.config.backbone_pretrained
    assert torch.allclose(merged(items, mask).logits, expected, atol=1e-5)


def test_training_steps_lower_the_loss_on_a_learnable_pattern(catalog):
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, lora_r=4)
    # Each item is followed by the next id: a rule the model can learn from the sequences alone.
    starts = torch.arange(0, 16)
    items = (starts[:, None] + torch.arange(10)[None, :]) % len(catalog)
    labels = (items + 1) % len(catalog)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        loss = model(items, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_hidden_size_mismatch_is_a_clear_error(catalog):
    backbone, _ = load_backbone("tiny-llama")
    config = SeqRecConfig(num_items=3, backbone_config=backbone.config.to_dict(), hidden_size=48)
    with pytest.raises(ValueError, match="hidden size"):
        SeqRecForNextItem(config, backbone=backbone)


def test_chunked_loss_matches_the_full_loss_and_its_gradients(catalog):
    torch.manual_seed(0)
    full, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12)
    chunked, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, loss_chunk_size=5)
    chunked.load_state_dict(full.state_dict())
    full.eval(), chunked.eval()
    items, mask, labels = _batch(len(catalog))
    loss_full = full(items, mask, labels=labels).loss
    loss_chunked = chunked(items, mask, labels=labels).loss
    assert torch.allclose(loss_full, loss_chunked, atol=1e-6)
    loss_full.backward()
    loss_chunked.backward()
    assert torch.allclose(full.item_table.weight.grad, chunked.item_table.weight.grad, atol=1e-6)
    lora = next(n for n, _ in full.named_parameters() if "lora_B" in n)  # lora_A gets no gradient while B is zero
    assert full.get_parameter(lora).grad.abs().sum() > 0
    assert torch.allclose(full.get_parameter(lora).grad, chunked.get_parameter(lora).grad, atol=1e-6)


def test_scores_stay_fp32_under_bf16_autocast(tiny_model):
    """bf16 scores would round neighbouring items to the same value, and ties count against the model."""
    model, _ = tiny_model
    model.eval()
    with torch.no_grad():
        model.item_table.weight.mul_(50)  # scores of a few units, where bf16 steps are about 0.02
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(torch.tensor([[0, 5, 9, 7]]))
        last = output.last_hidden_state[:, -1].float()
        exact = last @ model.item_table.weight.float().T
    assert output.logits.dtype == torch.float32
    assert torch.allclose(output.logits, exact, rtol=0, atol=1e-5)


def test_building_and_saving_a_lora_model_warns_nothing_and_looks_nothing_up(catalog, tmp_path, monkeypatch):
    """The saved adapter config names a base model from_pretrained resolves, and saving never asks the Hub."""
    import peft.utils.save_and_load
    import warnings

    from hf_seqrec.modeling.backbones import SMOLLM2_HUB_ID, adapter_base_model

    def no_hub(*args, **kwargs):
        raise AssertionError(f"saving looked up the Hub: {args}")

    monkeypatch.setattr(peft.utils.save_and_load, "check_file_exists_on_hf_hub", no_hub)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12)
        for attempt in ("first", "second"):  # the second save is where the base model used to be the bare alias
            model.save_pretrained(tmp_path / attempt)
    assert [str(w.message) for w in caught] == []
    adapter_config = json.loads((tmp_path / "second" / "seqrec_adapter_config.json").read_text())
    assert (tmp_path / "second" / "adapter_config.json").exists() is False
    base = adapter_config["base_model_name_or_path"]
    assert base == adapter_base_model("tiny-llama") and AutoConfig.from_pretrained(base).model_type == "llama"
    assert adapter_base_model("smollm2-135m") == SMOLLM2_HUB_ID
    assert adapter_base_model("someone/their-lm") == "someone/their-lm"
    assert SeqRecForNextItem.from_pretrained(tmp_path / "second").config.backbone_name_or_path == "tiny-llama"
