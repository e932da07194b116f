"""Explanations of a recommendation (`explain=True`): occlusion and integrated gradients on tiny models.

Every expected contribution is recomputed from the model's own scores, one history at a time, so an
explanation that batches, pads, masks or sums wrongly fails here.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from transformers import pipeline
from transformers.dynamic_module_utils import get_imports, get_relative_imports

import hf_seqrec  # noqa: F401  (registers the task)
from hf_seqrec import SeqRecForNextItem
from hf_seqrec.modeling.explain import (
    baseline_vector,
    integrated_gradients,
    occlusion,
    reference_scores,
)
from testing_utils import history_logits, numbered_catalog, run_in_fresh_process, save_tiny_lm_checkpoint

MAX_LEN = 8
HISTORY = ["3", "17", "8", "25", "11"]
KEYS = {"item_id", "text", "contribution", "position"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Llama with a non-trivial LoRA adapter, saved with its code and popularity counts; `model` and
    `recommend` (conftest.py) are its model and pipeline."""
    return save_tiny_lm_checkpoint(tmp_path_factory.mktemp("lm"), numbered_catalog(30), max_len=MAX_LEN, popularity=[[0, 1, 1, 2]])


def _baseline_model(name: str) -> SeqRecForNextItem:
    torch.manual_seed(1)
    model, _ = SeqRecForNextItem.from_backbone(name, num_items=30, max_len=MAX_LEN, backbone_options={"hidden_size": 16})
    with torch.no_grad():
        model.item_table.weight.normal_(std=1.0)
    model.item_catalog = numbered_catalog(30)
    return model.eval()


def _rows(model, ids):
    return [model.item_catalog.index(i) for i in ids]


def _score_embeds(model, embeds, item):
    with torch.no_grad():
        return model(inputs_embeds=embeds.unsqueeze(0), return_logits=True).logits[0, item].item()


# ----------------------------------------------------------------------------- the model's hook
def test_forward_from_input_vectors_gives_the_same_scores_as_from_ids(model):
    ids = torch.tensor([_rows(model, HISTORY)])
    with torch.no_grad():
        from_ids = model(ids, return_logits=True).logits
        from_vectors = model(inputs_embeds=model.get_input_embeddings()(ids), return_logits=True).logits
    torch.testing.assert_close(from_vectors, from_ids)
    with pytest.raises(ValueError, match="exactly one of input_item_ids and inputs_embeds"):
        model(ids, inputs_embeds=model.get_input_embeddings()(ids))


# ----------------------------------------------------------------------------- pipeline output
@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_every_recommendation_carries_a_sorted_explanation_of_the_history(recommend, method):
    plain = recommend({"history": HISTORY}, top_k=3)
    explained = recommend({"history": HISTORY}, top_k=3, explain=True, explain_method=method)
    assert all("explanation" not in r for r in plain)
    # Explaining changes nothing else.
    assert [{k: v for k, v in r.items() if k != "explanation"} for r in explained] == plain
    for result in explained:
        explanation = result["explanation"]
        assert all(set(entry) == KEYS for entry in explanation)
        assert sorted(e["position"] for e in explanation) == list(range(len(HISTORY)))
        assert all(HISTORY[e["position"]] == e["item_id"] for e in explanation)
        assert all(e["text"] == recommend.catalog.texts[recommend.catalog.row_of[e["item_id"]]] for e in explanation)
        contributions = [e["contribution"] for e in explanation]
        assert contributions == sorted(contributions, reverse=True)
        assert max(abs(c) for c in contributions) > 1e-4  # a real explanation, not zeros


def test_occlusion_is_the_score_drop_when_each_item_is_removed(recommend, model):
    results = recommend({"history": HISTORY}, top_k=2, explain=True)
    rows = _rows(model, HISTORY)
    for result in results:
        item = model.item_catalog.index(result["item_id"])
        full = history_logits(model, rows)[item].item()
        assert result["score"] == pytest.approx(full, abs=1e-5)  # the score the pipeline ranked by
        for entry in result["explanation"]:
            position = entry["position"]
            without = history_logits(model, rows[:position] + rows[position + 1 :])[item].item()  # one history at a time, unpadded
            assert entry["contribution"] == pytest.approx(full - without, abs=1e-5)


def test_only_the_items_the_model_reads_are_explained(recommend):
    history = [str(i) for i in range(1, MAX_LEN + 4)]  # 3 more than the model reads
    result = recommend({"history": history}, top_k=1, explain=True)[0]
    assert sorted(e["item_id"] for e in result["explanation"]) == sorted(history[-MAX_LEN:])
    assert recommend({"history": history[-MAX_LEN:]}, top_k=1, explain=True)[0]["explanation"] == result["explanation"]


def test_a_duplicate_item_is_explained_once_per_position(recommend):
    result = recommend({"history": ["4", "9", "4"]}, top_k=1, explain=True)[0]
    assert sorted((e["item_id"], e["position"]) for e in result["explanation"]) == [("4", 0), ("4", 2), ("9", 1)]


def test_the_popularity_fallback_has_nothing_to_explain(recommend):
    results = recommend({"history": []}, top_k=2, fallback="popular", explain=True)
    assert [r["explanation"] for r in results] == [[], []]


def test_bad_explain_parameters_are_refused(recommend):
    with pytest.raises(ValueError, match=r"explain_method must be one of \['occlusion', 'integrated_gradients'\]; got 'shap'"):
        recommend({"history": HISTORY}, explain=True, explain_method="shap")
    with pytest.raises(TypeError, match="explain must be True or False"):
        recommend({"history": HISTORY}, explain="yes")
    with pytest.raises(ValueError, match="explain_baseline must be one of"):
        recommend({"history": HISTORY}, explain=True, explain_baseline="median")
    with pytest.raises(ValueError, match="explain_steps must be an integer of at least 2"):
        recommend({"history": HISTORY}, explain=True, explain_steps=1)


# ----------------------------------------------------------------------------- what the numbers mean
@pytest.mark.parametrize(("backbone", "baseline"), [("lm", "mean"), ("sasrec", "mean"), ("gru4rec", "zeros")])
def test_a_one_item_history_is_explained_against_the_empty_history(model, backbone, baseline):
    """Occlusion: full score minus the empty history's (one position holding the baseline vector).
    Integrated gradients from the same baseline must reach the same number: both are
    score(item) - score(baseline), one exactly, the other through completeness. (Zero vectors are
    no baseline for the normalised backbones: see explain.py.)"""
    lm = model if backbone == "lm" else _baseline_model(backbone)
    row, items = lm.item_catalog.index("12"), [0, 5, 29]
    empty = [_score_embeds(lm, baseline_vector(lm, baseline).view(1, -1), item) for item in items]
    expected = [history_logits(lm, [row])[item].item() - score for item, score in zip(items, empty)]
    assert reference_scores(lm, baseline)[items].tolist() == pytest.approx(empty, abs=1e-6)
    assert occlusion(lm, [row], items, baseline=baseline)[:, 0].tolist() == pytest.approx(expected, abs=1e-5)
    ig, delta = integrated_gradients(lm, [row], items, baseline=baseline, n_steps=64, return_convergence_delta=True)
    assert ig[:, 0].tolist() == pytest.approx(expected, abs=2e-2 * max(abs(e) for e in expected))
    assert delta.abs().max().item() < 2e-2 * max(abs(e) for e in expected)


@pytest.mark.parametrize("backbone", ["lm", "sasrec", "gru4rec"])
def test_integrated_gradients_add_up_to_the_score_difference_from_the_baseline(model, backbone):
    """Completeness: sum of contributions = score(history) - score(baseline vector at every position)."""
    if backbone != "lm":
        model = _baseline_model(backbone)
    rows, items = _rows(model, HISTORY), [2, 19]
    ig = integrated_gradients(model, rows, items, n_steps=64)
    baseline = baseline_vector(model, "mean").expand(len(rows), -1)
    for contributions, item in zip(ig, items):
        difference = history_logits(model, rows)[item].item() - _score_embeds(model, baseline, item)
        assert abs(difference) > 1e-3
        assert contributions.sum().item() == pytest.approx(difference, abs=1e-2 * abs(difference) + 1e-4)


def _memoryless_lstm() -> SeqRecForNextItem:
    """An LSTM recommender that reads only the last item: no recurrent weights, forget gate shut.

    With W_hh = 0 and a forget-gate bias of -1e4 (sigmoid = 0 exactly in float32), the cell state
    is i*g of the current input alone, so every earlier item changes nothing.
    """
    model = _baseline_model("lstm")
    rnn = model.get_backbone().rnn
    hidden = rnn.hidden_size
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0[hidden : 2 * hidden] = -1e4  # PyTorch's gate order: input, forget, cell, output
    return model


@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_items_the_model_does_not_use_contribute_nothing(method):
    model = _memoryless_lstm()
    rows, items = _rows(model, HISTORY), [0, 7, 21]
    contributions = occlusion(model, rows, items) if method == "occlusion" else integrated_gradients(model, rows, items)
    assert contributions[:, :-1].abs().max().item() < 1e-6
    assert contributions[:, -1].abs().min().item() > 1e-3  # the last item does all the work
    # The same items matter to an ordinary LSTM, so the check above can fail.
    ordinary = _baseline_model("lstm")
    ordinary_contributions = occlusion(ordinary, rows, items) if method == "occlusion" else integrated_gradients(ordinary, rows, items)
    assert ordinary_contributions[:, :-1].abs().max().item() > 1e-3


def test_explanations_of_a_baseline_checkpoint_through_the_pipeline(tmp_path):
    model = _baseline_model("sasrec")
    model.save_pretrained(tmp_path)
    recommend = pipeline("next-item", model=str(tmp_path))
    for method in ("occlusion", "integrated_gradients"):
        result = recommend({"history": HISTORY}, top_k=1, explain=True, explain_method=method)[0]
        assert len(result["explanation"]) == len(HISTORY)
    loaded = recommend.model
    item = loaded.item_catalog.index(result["item_id"])
    rows = _rows(loaded, HISTORY)
    occluded = recommend({"history": HISTORY}, top_k=1, explain=True)[0]["explanation"]
    last = next(e for e in occluded if e["position"] == len(HISTORY) - 1)
    assert last["contribution"] == pytest.approx(
        history_logits(loaded, rows)[item].item() - history_logits(loaded, rows[:-1])[item].item(), abs=1e-5
    )


def test_integrated_gradients_refuse_an_int8_pipeline_and_occlusion_still_works(checkpoint):
    recommend = pipeline("next-item", model=str(checkpoint), precision="int8")
    assert recommend({"history": HISTORY}, top_k=1, explain=True)[0]["explanation"]
    with pytest.raises(ValueError, match="int8"):
        recommend({"history": HISTORY}, top_k=1, explain=True, explain_method="integrated_gradients")


# ----------------------------------------------------------------------------- trust_remote_code
def test_the_checkpoint_carries_the_explanation_code(checkpoint):
    assert (checkpoint / "explain.py").is_file()
    assert "explain" in get_relative_imports(checkpoint / "next_item.py")
    # captum is optional: transformers must not demand it before loading the checkpoint's code.
    assert {"hf_seqrec", "captum"}.isdisjoint(get_imports(checkpoint / "explain.py"))


def test_explanations_with_trust_remote_code_in_a_process_without_hf_seqrec(checkpoint, recommend, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from transformers import pipeline
        recommend = pipeline(model={str(checkpoint)!r}, trust_remote_code=True)
        out = {{
            "occlusion": recommend({{"history": {HISTORY!r}}}, top_k=2, explain=True),
            "ig": recommend({{"history": {HISTORY!r}}}, top_k=2, explain=True, explain_method="integrated_gradients"),
            "modules": [type(recommend).__module__],
            "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec"),
        }}
        print("RESULT" + json.dumps(out))
        """
    )
    # One thread: a tiny model gains nothing from more, and a busy machine makes spinning threads slow.
    out = run_in_fresh_process(script, tmp_path, timeout=600, OMP_NUM_THREADS="1")
    assert out["hf_seqrec"] == [] and out["modules"][0].startswith("transformers_modules.")
    for key, method in (("occlusion", "occlusion"), ("ig", "integrated_gradients")):
        want = recommend({"history": HISTORY}, top_k=2, explain=True, explain_method=method)
        assert len(out[key]) == len(want) == 2
        for got_result, want_result in zip(out[key], want):
            assert got_result["item_id"] == want_result["item_id"]
            got = [(e["item_id"], e["position"]) for e in got_result["explanation"]]
            assert got == [(e["item_id"], e["position"]) for e in want_result["explanation"]]
            assert [e["contribution"] for e in got_result["explanation"]] == pytest.approx(
                [e["contribution"] for e in want_result["explanation"]], abs=1e-5
            )
