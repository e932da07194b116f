"""`pipeline("next-item")` on a tiny checkpoint: inputs, outputs, edge cases and trust_remote_code.

Every expected ranking is recomputed from the model's own logits, so a pipeline that masks,
truncates, maps ids or pads wrongly fails here.
"""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest
import torch
from transformers import pipeline
from transformers.dynamic_module_utils import get_imports, get_relative_imports
from transformers.pipelines import PIPELINE_REGISTRY

import hf_seqrec  # noqa: F401  (registers the "next-item" task)
from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.pipelines import (
    AmbiguousItemWarning,
    NextItemPipeline,
    UnknownItemWarning,
)
from testing_utils import history_logits, run_in_fresh_process, save_tiny_lm_checkpoint

MAX_LEN = 8
NAMED = {
    "1": "Toy Story (1995) | Animation, Comedy",
    "2": "Hamlet (1948) | Drama",
    "3": "Hamlet (1990) | Drama",
    "4": "Amélie (2001) | Comedy, Romance",
    "5": "Heat (1995) | Action, Crime",
    "6": "Se7en (1995) | Thriller",
    "7": "Twelve Monkeys (1995) | Sci-Fi",
}


def _catalog() -> ItemCatalog:
    ids = list(NAMED) + [str(i) for i in range(8, 31)]
    texts = list(NAMED.values()) + [f"Film number {i} ({1970 + i}) | Drama" for i in range(8, 31)]
    return ItemCatalog(ids, texts)


TRAIN_SEQUENCES = [[0, 4, 4, 9], [4, 9, 9, 9], [9]]  # row counts: 9 -> 5, 4 -> 3, 0 -> 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A saved checkpoint with a non-trivial adapter, its tokenizer and popularity counts (`model` and
    `recommend` come from it, see conftest.py)."""
    return save_tiny_lm_checkpoint(
        tmp_path_factory.mktemp("checkpoint"), _catalog(), max_len=MAX_LEN, popularity=TRAIN_SEQUENCES
    )


def _expected(model, rows, *, top_k, seen=None, candidates=None):
    """(item ids, scores) the pipeline must return, computed straight from the model."""
    logits = history_logits(model, rows[-MAX_LEN:])
    allowed = torch.ones_like(logits, dtype=torch.bool)
    if candidates is not None:
        allowed[:] = False
        allowed[candidates] = True
    if seen:
        allowed[list(seen)] = False
    masked = logits.masked_fill(~allowed, float("-inf"))
    order = torch.argsort(masked, descending=True)[: min(top_k, int(allowed.sum()))]
    ids = [model.item_catalog.item_ids[i] for i in order.tolist()]
    return ids, logits[order].tolist()


def _assert_same(got, want):
    assert [(r["item_id"], r["text"], r["rank"]) for r in got] == [(r["item_id"], r["text"], r["rank"]) for r in want]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-5)


def _check_result(result, ids, scores, catalog):
    assert [r["item_id"] for r in result] == ids
    assert [r["rank"] for r in result] == list(range(1, len(ids) + 1))
    assert [r["text"] for r in result] == [catalog.texts[catalog.index(i)] for i in ids]
    assert [r["score"] for r in result] == pytest.approx(scores, abs=1e-5)
    assert all(set(r) == {"item_id", "text", "score", "rank"} for r in result)


# ----------------------------------------------------------------------------- registration and files
def test_task_is_registered_with_an_auto_class_and_loads_no_tokenizer(recommend):
    task = PIPELINE_REGISTRY.supported_tasks["next-item"]
    assert task["impl"] is NextItemPipeline and task["pt"][0].__name__ == "AutoModel"
    assert isinstance(recommend, NextItemPipeline)
    assert recommend.tokenizer is None and recommend.processor is None


def test_checkpoint_carries_its_code_and_names_its_pipeline(checkpoint):
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_seqrec.SeqRecConfig", "AutoModel": "modeling_seqrec.SeqRecForNextItem"}
    assert config["custom_pipelines"]["next-item"]["impl"] == "next_item.NextItemPipeline"
    assert config["custom_pipelines"]["next-item"]["pt"] == ["AutoModel"]
    for name in ("modeling_seqrec.py", "configuration_seqrec.py", "backbones.py", "next_item.py"):
        # What transformers' remote-code loader will look for: same-folder modules, installed packages.
        assert all((checkpoint / f"{module}.py").is_file() for module in get_relative_imports(checkpoint / name)), name
        assert "hf_seqrec" not in get_imports(checkpoint / name), name
    # With peft's adapter_config.json at the root, transformers would load a Hub copy of this
    # checkpoint as a bare adapter of "tiny-llama" (see test_hub_roundtrip.py).
    assert not (checkpoint / "adapter_config.json").exists()


def test_pipeline_normalisation_is_the_catalogue_rule(model, recommend):
    expected = {
        "Amélie (2001)": "amelie 2001",
        "  SE7EN!! ": "se7en",
        "Hamlet (1990) | Drama": "hamlet 1990 drama",
        "L'Âge d'or": "l age d or",
        "C'était un rendez-vous": "c etait un rendez vous",
    }
    for text, normalised in expected.items():
        assert model.item_catalog.normalize_text(text) == normalised
    # The pipeline matches titles with that rule: spellings that only it equates with a catalogue title
    # (case, accents, punctuation read as spaces) resolve to that one item, with no warning.
    spellings = {
        "AMÉLIE (2001)": "4",
        "  se7en!! ": "6",
        "hamlet, 1990 - DRAMA": "3",  # the year keeps it apart from Hamlet (1948)
        "twelve-MONKEYS": "7",
    }
    for spelling, item_id in spellings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither unknown nor ambiguous
            by_title = recommend({"history_text": [spelling]}, top_k=4)
        assert by_title == recommend({"history": [item_id]}, top_k=4), spelling


# ----------------------------------------------------------------------------- rankings
def test_single_history_gets_the_models_top_k_without_seen_items(recommend, model):
    history = ["5", 12, 7.0, " 20 "]  # ids as the user has them: ints, floats and padded strings
    rows = [4, 11, 6, 19]
    result = recommend({"history": history}, top_k=5)
    ids, scores = _expected(model, rows, top_k=5, seen=rows)
    _check_result(result, ids, scores, model.item_catalog)
    assert not {r["item_id"] for r in result} & {"5", "12", "7", "20"}


def test_exclude_seen_false_ranks_the_whole_catalogue(recommend, model):
    rows = [4, 11, 6, 19]
    full = recommend({"history": ["5", "12", "7", "20"]}, top_k=len(model.item_catalog), exclude_seen=False)
    ids, scores = _expected(model, rows, top_k=len(model.item_catalog))
    _check_result(full, ids, scores, model.item_catalog)
    masked = recommend({"history": ["5", "12", "7", "20"]}, top_k=len(model.item_catalog))
    assert len(masked) == len(model.item_catalog) - 4


def test_candidates_restrict_the_ranking(recommend, model):
    candidates = ["1", "2", "3", "5", "9", "10", "29"]
    with pytest.warns(UnknownItemWarning, match="'nope'"):
        result = recommend({"history": ["5", "9"]}, candidates=candidates + ["nope"], top_k=10)
    rows = [model.item_catalog.index(c) for c in candidates]
    ids, scores = _expected(model, [4, 8], top_k=10, seen=[4, 8], candidates=rows)
    _check_result(result, ids, scores, model.item_catalog)
    assert len(result) == 5  # 7 candidates minus the 2 seen ones
    with pytest.warns(UnknownItemWarning), pytest.raises(ValueError, match="none of the 1 candidates"):
        recommend({"history": ["5"]}, candidates=["nope"])


def test_return_scores_false_drops_only_the_score(recommend):
    with_scores = recommend({"history": ["1", "2"]}, top_k=3)
    without = recommend({"history": ["1", "2"]}, top_k=3, return_scores=False)
    assert [set(r) for r in without] == [{"item_id", "text", "rank"}] * 3
    assert [r["item_id"] for r in without] == [r["item_id"] for r in with_scores]


def test_top_k_larger_than_what_is_left_returns_everything_left(recommend, model):
    result = recommend({"history": ["1"]}, top_k=1000)
    assert len(result) == len(model.item_catalog) - 1


# ----------------------------------------------------------------------------- input forms
def test_titles_match_exactly_then_leniently_and_agree_with_ids(recommend):
    by_id = recommend({"history": ["1", "4", "6", "12"]}, top_k=6)
    titles = [
        "Toy Story (1995) | Animation, Comedy",  # the exact text
        "amelie",  # normalised title without its year (accent, case)
        "SE7EN (1995)",  # normalised title
        "Film number 12 (1982)",  # the exact title
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here is unknown or ambiguous
        by_title = recommend({"history_text": titles}, top_k=6)
    assert by_title == by_id


def test_ambiguous_and_unknown_titles_are_reported_and_skipped(recommend):
    with pytest.warns(AmbiguousItemWarning, match=r"'Hamlet' matches 2 \(.*'Hamlet \(1948\) \| Drama'\), 3 \("):
        with pytest.warns(UnknownItemWarning, match="'Casablanca'"):
            result = recommend({"history_text": ["Hamlet", "Casablanca", "Heat"]}, top_k=4)
    assert result == recommend({"history": ["5"]}, top_k=4)
    # A year makes the title unique again.
    assert recommend({"history_text": ["hamlet (1990)"]}, top_k=4) == recommend({"history": ["3"]}, top_k=4)


def test_timestamps_put_the_history_in_time_order(recommend):
    ordered = recommend({"history": ["1", "2", "5", "9"]}, top_k=5)
    shuffled = {"history": ["9", "1", "5", "2"], "timestamps": [400, 100, 300, 200]}
    assert recommend(shuffled, top_k=5) == ordered
    iso = {"history": ["9", "1", "5", "2"], "timestamps": ["1998-01-04", "1998-01-01", "1998-01-03", "1998-01-02T00:00:00"]}
    assert recommend(iso, top_k=5) == ordered
    assert recommend({"history": ["9", "1", "5", "2"]}, top_k=5) != ordered  # the order matters to the model
    with pytest.raises(ValueError, match="3 entries for 4 history items"):
        recommend({"history": ["9", "1", "5", "2"], "timestamps": [1, 2, 3]})


def test_flat_list_and_other_ambiguous_inputs_are_refused_with_the_accepted_forms(recommend):
    with pytest.raises(TypeError, match=r"flat list.*read as 3 separate histories.*\{\"history\": \[\.\.\.\]\}"):
        recommend(["1", "2", "3"])
    with pytest.raises(TypeError, match="flat list"):
        recommend([1, 2])
    with pytest.raises(TypeError, match=r'"history" must be a list'):
        recommend({"history": "12"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hist'\]"):
        recommend({"hist": ["1"]})
    with pytest.raises(ValueError, match="exactly one of"):
        recommend({"history": ["1"], "history_text": ["Heat"]})
    with pytest.raises(TypeError, match="every element of a batch must be a dict"):
        recommend([{"history": ["1"]}, ["2"]])
    with pytest.raises(TypeError, match="unsupported input"):
        recommend("1")
    with pytest.raises(TypeError, match="unknown next-item pipeline parameter"):
        recommend({"history": ["1"]}, topk=3)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        recommend({"history": ["1"]}, top_k=0)


# ----------------------------------------------------------------------------- edge cases
def test_unknown_ids_are_skipped_with_a_warning_naming_them(recommend):
    with pytest.warns(UnknownItemWarning, match=r"2 of 4 history items .*'x9', 999"):
        result = recommend({"history": ["1", "x9", "5", 999]}, top_k=5)
    assert result == recommend({"history": ["1", "5"]}, top_k=5)
    with pytest.warns(UnknownItemWarning):
        with pytest.raises(ValueError, match=r"none of the 2 history items is in the catalogue.*fallback=\"popular\""):
            recommend({"history": ["x9", 999]})


def test_empty_history_is_an_error_unless_the_popularity_fallback_is_asked_for(recommend, model):
    with pytest.raises(ValueError, match="the history is empty"):
        recommend({"history": []})
    popular = recommend({"history": []}, fallback="popular", top_k=3)
    assert [r["item_id"] for r in popular] == ["10", "5", "1"]  # rows 9, 4, 0 by training counts 5, 3, 1
    assert [r["score"] for r in popular] == [5.0, 3.0, 1.0]
    with pytest.warns(UnknownItemWarning):
        assert recommend({"history": ["x9"]}, fallback="popular", top_k=3) == popular
    with pytest.raises(ValueError, match="fallback must be None or 'popular'"):
        recommend({"history": []}, fallback="random")


def test_long_history_reads_the_most_recent_max_len_items_and_masks_all(recommend, model):
    rows = list(range(3, 25))  # 22 items, max_len is 8
    history = [model.item_catalog.item_ids[r] for r in rows]
    result = recommend({"history": history}, top_k=len(model.item_catalog))
    ids, scores = _expected(model, rows, top_k=len(model.item_catalog), seen=rows)
    _check_result(result, ids, scores, model.item_catalog)
    assert len(result) == len(model.item_catalog) - len(rows)
    # Scores come from the last 8 items only: the older ones change nothing.
    recent = recommend({"history": history[-MAX_LEN:]}, top_k=5, exclude_seen=False)
    assert recent == recommend({"history": history}, top_k=5, exclude_seen=False)


def test_a_batch_of_mixed_lengths_equals_one_call_per_history(recommend):
    batch = [
        {"history": ["1"]},
        {"history": [str(i) for i in range(8, 30)]},  # longer than max_len
        {"history_text": ["Heat", "amelie"]},
        {"history": []},  # popularity fallback inside a batch
        {"history": ["7", "2", "29"], "timestamps": [3, 1, 2]},
    ]
    singles = [recommend(h, top_k=4, fallback="popular") for h in batch]
    for batch_size in (None, 2):
        results = recommend(batch, top_k=4, fallback="popular", batch_size=batch_size)
        assert len(results) == len(batch)
        for got, want in zip(results, singles):
            assert [r["item_id"] for r in got] == [r["item_id"] for r in want]
            assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=1e-4)
    streamed = recommend((h for h in batch[:2]), top_k=4)
    assert not isinstance(streamed, list)
    assert [r["item_id"] for r in next(streamed)] == [r["item_id"] for r in singles[0]]


def test_popularity_fallback_without_counts_says_how_to_add_them(checkpoint, tmp_path):
    import shutil

    bare = tmp_path / "no_popularity"
    shutil.copytree(checkpoint, bare)
    (bare / "item_popularity.json").unlink()
    recommend = pipeline("next-item", model=str(bare))
    assert recommend({"history": ["1"]}, top_k=2)  # only the fallback needs the counts
    with pytest.raises(ValueError, match="no item_popularity.json.*save_item_popularity"):
        recommend({"history": []}, fallback="popular")


def test_pipeline_from_an_in_memory_model(model):
    recommend = pipeline("next-item", model=model)
    assert recommend({"history": ["1"]}, top_k=3) == pipeline("next-item", model=model)({"history": [1]}, top_k=3)


# ----------------------------------------------------------------------------- trust_remote_code
def test_trust_remote_code_works_in_a_process_that_never_imports_hf_seqrec(checkpoint, recommend, tmp_path):
    """The checkpoint's own code loads it: no hf_seqrec module is imported in the child process."""
    script = textwrap.dedent(
        f"""
        import json, sys, warnings
        warnings.simplefilter("ignore")
        from transformers import pipeline
        recommend = pipeline(model={str(checkpoint)!r}, trust_remote_code=True)
        out = {{
            "ids": recommend({{"history": ["5", 12, "7", "20"]}}, top_k=5),
            "titles": recommend({{"history_text": ["Heat", "amelie"]}}, top_k=3),
            "batch": recommend([{{"history": ["1"]}}, {{"history": []}}], top_k=3, fallback="popular"),
            "classes": [type(recommend).__module__, type(recommend.model).__module__],
            "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec"),
        }}
        try:
            recommend(["1", "2"])
        except TypeError as error:
            out["flat"] = str(error)
        print("RESULT" + json.dumps(out))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == []
    assert all(module.startswith("transformers_modules.") for module in out["classes"])
    _assert_same(out["ids"], recommend({"history": ["5", 12, "7", "20"]}, top_k=5))
    _assert_same(out["titles"], recommend({"history_text": ["Heat", "amelie"]}, top_k=3))
    for got, want in zip(out["batch"], recommend([{"history": ["1"]}, {"history": []}], top_k=3, fallback="popular")):
        _assert_same(got, want)
    assert "flat list" in out["flat"]
