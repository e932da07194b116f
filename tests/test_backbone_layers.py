"""`backbone_layers`: a pretrained backbone cut to its first K decoder layers, rebuilt the same on every load.

Checked on the two layouts transformers uses for decoder stacks: Llama's `layers` (tiny-llama) and
GPT-2's `h` with `n_layer`. The kept layers must hold exactly the pretrained weights of the first K.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from transformers import AutoModel, GPT2Config, GPT2Model

from hf_seqrec.modeling import SeqRecForNextItem
from hf_seqrec.modeling.backbones import _byte_level_tokenizer, resolve_backbone
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from testing_utils import run_in_fresh_process

HISTORY = torch.tensor([[3, 7, 1, 12, 5]])


@pytest.fixture
def gpt2_dir(tmp_path):
    """A three-layer GPT-2 with random weights and a tokenizer, saved as a local backbone directory."""
    torch.manual_seed(0)
    tokenizer = _byte_level_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=3, n_head=4, n_positions=64)
    GPT2Model(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


def _same_weights(kept: torch.nn.Module, original: torch.nn.Module) -> bool:
    """Whether a kept layer holds the original's weights (LoRA's own weights aside; they start as a no-op)."""
    kept_state = {k.replace(".base_layer", ""): v for k, v in kept.state_dict().items() if "lora_" not in k}
    original_state = original.state_dict()
    return kept_state.keys() == original_state.keys() and all(torch.equal(kept_state[k], original_state[k]) for k in kept_state)


def _saved_and_reloaded(model: SeqRecForNextItem, tmp_path) -> SeqRecForNextItem:
    """The model after save_pretrained and from_pretrained, checked to score exactly as before."""
    model.eval()
    expected = model(HISTORY).logits
    model.save_pretrained(tmp_path / "ckpt")
    reloaded = SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")
    torch.testing.assert_close(reloaded(HISTORY).logits, expected)
    return reloaded


def test_llama_backbone_keeps_the_pretrained_first_layers_and_reloads_them(catalog, tmp_path):
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, backbone_layers=1, max_len=8)
    full = AutoModel.from_pretrained(resolve_backbone("tiny-llama"))
    backbone = model.get_backbone()
    assert len(backbone.layers) == 1 and len(full.layers) == 2
    assert model.config.backbone_layers == 1 and model.config.backbone_config["num_hidden_layers"] == 1
    assert _same_weights(backbone.layers[0], full.layers[0])

    reloaded = _saved_and_reloaded(model, tmp_path)
    assert len(reloaded.get_backbone().layers) == 1


def test_gpt2_style_backbone_is_cut_through_n_layer(catalog, gpt2_dir, tmp_path):
    model, _ = SeqRecForNextItem.from_backbone(
        str(gpt2_dir), catalog.texts, backbone_layers=2, lora_target_modules=["c_attn"], max_len=8
    )
    full = AutoModel.from_pretrained(gpt2_dir)
    backbone = model.get_backbone()
    assert len(backbone.h) == 2 and backbone.config.n_layer == 2
    assert all(_same_weights(backbone.h[i], full.h[i]) for i in range(2))
    reloaded = _saved_and_reloaded(model, tmp_path)
    assert len(reloaded.get_backbone().h) == 2


@pytest.mark.parametrize("layers", [0, 3, -1])
def test_layers_outside_the_backbone_are_refused_naming_the_range(catalog, layers):
    with pytest.raises(ValueError, match=r"backbone_layers.*1\.\.2|backbone_layers must be a positive"):
        SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, backbone_layers=layers)


def test_baselines_are_sized_with_num_layers_not_backbone_layers():
    with pytest.raises(ConfigError, match="backbone_layers"):
        FinetuneConfig(backbone="sasrec", backbone_layers=1)
    assert FinetuneConfig(backbone="tiny-llama", backbone_layers=1).backbone_layers == 1


def test_model_card_names_the_kept_layers():
    from hf_seqrec.publishing.model_card import _depth_note

    assert "first 8 decoder layers" in _depth_note(8)
    assert _depth_note(None) == ""


def test_truncated_checkpoint_loads_with_trust_remote_code_without_hf_seqrec(catalog, tmp_path):
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, backbone_layers=1, max_len=8)
    model.item_catalog = catalog
    model.eval()
    expected = model(HISTORY).logits[0].tolist()
    model.save_pretrained(tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt")
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True).eval()
        logits = model(torch.tensor({HISTORY.tolist()})).logits[0].tolist()
        layers = len(model.get_backbone().layers)
        hf_seqrec = sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")
        print("RESULT" + json.dumps({{"logits": logits, "layers": layers, "hf_seqrec": hf_seqrec}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == [] and out["layers"] == 1
    torch.testing.assert_close(torch.tensor(out["logits"]), torch.tensor(expected))


# ----------------------------------------------------------------------------- untied output table
def test_untied_output_table_starts_from_text_trains_apart_and_round_trips(catalog, tmp_path):
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, tie_item_table=False, max_len=8)
    table = model.item_table
    assert torch.equal(table.output_weight, table.weight)  # both start from the item texts
    labels = torch.tensor([[7, 1, 12, 5, 9]])
    model.train()
    model(HISTORY, labels=labels).loss.backward()
    # Scores use the output table only: the input table learns through the backbone's inputs alone.
    assert table.output_weight.grad is not None and table.output_weight.grad.abs().sum() > 0
    with torch.no_grad():
        table.output_weight.add_(torch.randn_like(table.output_weight))
    model.eval()
    hidden = model(HISTORY).last_hidden_state[0, -1]
    expected = hidden @ table.output_weight.T
    torch.testing.assert_close(model(HISTORY).logits[0], expected)
    model.save_pretrained(tmp_path / "ckpt")
    reloaded = SeqRecForNextItem.from_pretrained(tmp_path / "ckpt")
    assert reloaded.config.tie_item_table is False
    torch.testing.assert_close(reloaded(HISTORY).logits, model(HISTORY).logits)


def test_untied_output_table_is_refused_with_the_text_tower():
    with pytest.raises(ConfigError, match="tie_item_table"):
        FinetuneConfig(backbone="tiny-llama", item_text_tower=True, tie_item_table=False)
