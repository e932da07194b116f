"""fp32 / bf16 / int8 inference: `prepare_for_inference` and `pipeline("next-item", precision=...)` on a tiny checkpoint."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn
from transformers import pipeline

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.modeling.precision import INT8_KEEP_FP32, PRECISIONS, prepare_for_inference
from testing_utils import numbered_catalog, run_in_fresh_process, save_tiny_lm_checkpoint

HISTORIES = [["1", "5", "7"], ["2"], ["30", "12", "9", "4", "17", "22", "3", "8", "11", "6"]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A "trained" adapter: merging it must change the backbone."""
    return save_tiny_lm_checkpoint(tmp_path_factory.mktemp("checkpoint"), numbered_catalog(40, first_year=1960), max_len=8)


def _scores(recommend, history):
    return {r["item_id"]: r["score"] for r in recommend({"history": history}, top_k=40, exclude_seen=False)}


def _linear_types(module: nn.Module) -> set[str]:
    return {f"{type(m).__module__}.{type(m).__name__}" for m in module.modules() if "Linear" in type(m).__name__}


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_merges_the_adapter_keeps_the_item_table_fp32_and_ranks_alike(checkpoint, precision, one_torch_thread):
    reference = pipeline("next-item", model=str(checkpoint))
    recommend = pipeline("next-item", model=str(checkpoint), precision=precision)
    model = recommend.model
    assert model.inference_precision == precision
    assert not any("lora_" in name for name, _ in model.named_parameters()), "the adapter is merged"
    assert model.item_table.weight.dtype == torch.float32
    if precision == "int8":
        layers = [(name.rsplit(".", 1)[-1], f"{type(m).__module__}.{type(m).__name__}") for name, m in model.backbone.named_modules()]
        quantized = {short for short, kind in layers if ".quantized.dynamic." in kind}
        plain = {short for short, kind in layers if kind == "torch.nn.modules.linear.Linear"}
        assert quantized == {"gate_proj", "up_proj", "o_proj"}
        assert plain == set(INT8_KEEP_FP32)  # their inputs hold outlier activations: kept in fp32
    else:
        assert {p.dtype for p in model.backbone.parameters()} == {torch.bfloat16}
    for history in HISTORIES:
        want, got = _scores(reference, history), _scores(recommend, history)
        assert want.keys() == got.keys()
        # Close to fp32, and not identical (the conversion really happened).
        differences = [abs(want[i] - got[i]) for i in want]
        assert 0 < max(differences) < 0.1, differences
        top = lambda scores: set(sorted(scores, key=scores.get, reverse=True)[:10])  # noqa: E731
        assert len(top(want) & top(got)) >= 8


def test_fp32_merged_adapter_gives_the_same_scores(checkpoint):
    """The merge alone changes nothing but rounding: int8/bf16 differences come from the precision."""
    model = SeqRecForNextItem.from_pretrained(checkpoint)
    rows = torch.tensor([[0, 4, 6, 2]])
    with torch.no_grad():
        before = model(rows, return_logits=True).logits
        after = model.merge_adapter()(rows, return_logits=True).logits
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_precision_is_checked_applied_once_and_never_saved(checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of 'fp32', 'bf16', 'int8'; got 'int4'"):
        pipeline("next-item", model=str(checkpoint), precision="int4")
    recommend = pipeline("next-item", model=str(checkpoint))
    with pytest.raises(TypeError, match="precision is chosen once, when the pipeline is built"):
        recommend({"history": ["1"]}, precision="int8")

    model = SeqRecForNextItem.from_pretrained(checkpoint)
    assert prepare_for_inference(model, "int8") is model
    quantized = [m for m in model.backbone.modules() if ".quantized." in type(m).__module__]
    assert prepare_for_inference(model, "int8") is model  # again: nothing to do
    assert [m for m in model.backbone.modules() if ".quantized." in type(m).__module__] == quantized
    with pytest.raises(ValueError, match="already prepared for int8"):
        prepare_for_inference(model, "bf16")
    with pytest.raises(ValueError, match="checkpoints are fp32"):
        model.save_pretrained(tmp_path / "int8")
    assert not (tmp_path / "int8").exists()
    assert set(PRECISIONS) == {"fp32", "bf16", "int8"}


def test_int8_with_nothing_kept_in_fp32_quantizes_every_linear_layer(checkpoint):
    model = prepare_for_inference(SeqRecForNextItem.from_pretrained(checkpoint), "int8", keep_fp32=())
    types = _linear_types(model.backbone)
    assert types and all(".quantized." in t for t in types), types


def test_fp32_casts_a_model_loaded_in_bf16_back(checkpoint):
    model = SeqRecForNextItem.from_pretrained(checkpoint, dtype=torch.bfloat16)
    prepare_for_inference(model, "fp32")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_int8_through_the_checkpoints_own_code(checkpoint, tmp_path):
    """trust_remote_code: precision.py travels with next_item.py, and no hf_seqrec module is imported."""
    assert (checkpoint / "precision.py").is_file()
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from transformers import pipeline
        recommend = pipeline(model={str(checkpoint)!r}, trust_remote_code=True, precision="int8")
        out = {{
            "recs": recommend({{"history": ["1", "5", "7"]}}, top_k=5),
            "quantized": sum(".quantized." in type(m).__module__ for m in recommend.model.backbone.modules()),
            "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec"),
        }}
        print("RESULT" + json.dumps(out))
        """
    )
    out = run_in_fresh_process(script, tmp_path, timeout=600)
    assert out["hf_seqrec"] == [] and out["quantized"] > 0
    want = pipeline("next-item", model=str(checkpoint), precision="int8")({"history": ["1", "5", "7"]}, top_k=5)
    assert [r["item_id"] for r in out["recs"]] == [r["item_id"] for r in want]
    assert [r["score"] for r in out["recs"]] == pytest.approx([r["score"] for r in want], abs=1e-5)


def test_model_card_says_checkpoints_are_fp32_and_precision_is_chosen_at_load_time():
    from hf_seqrec.publishing.model_card import TEMPLATE

    text = " ".join(TEMPLATE.read_text(encoding="utf-8").split())
    assert "weights in this checkpoint are fp32 and are never saved quantized" in text
    assert 'precision="int8"' in text
