"""Property-based tests (hypothesis) of the data pipeline and of the next-item pipeline's input handling.

Random small logs are written to csv / tsv / jsonl with ids in mixed spellings, then loaded and prepared;
random histories of known, unknown and repeated ids (in mixed spellings) go through the pipeline. The
properties are the promises of the docstrings: the leave-one-out protocol (chronological order, last
item the test target, second to last the validation target), id normalisation, and a well-formed
ranked list that never recommends a seen item when asked not to.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import hf_seqrec  # noqa: F401  (registers the "next-item" task)
from hf_seqrec import SeqRecForNextItem
from hf_seqrec.data import DataConfig, DataValidationError, load_interactions, prepare_data
from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.pipelines import save_item_popularity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)

# ----------------------------------------------------------------------------- the data pipeline

ID_SPELLINGS = ("int", "text", "padded", "float")


def _spell(item: int, spelling: str, file_format: str) -> object:
    """One id as a user's file might hold it; every spelling is the same id."""
    if file_format == "jsonl":
        return {"int": item, "text": str(item), "padded": f" {item} ", "float": float(item)}[spelling]
    return {"int": str(item), "text": str(item), "padded": f" {item} ", "float": f"{item}.0"}[spelling]


def _write(directory: Path, name: str, file_format: str, columns: list[str], rows: list[list[object]]) -> Path:
    path = directory / f"{name}.{file_format}"
    if file_format == "jsonl":
        text = "".join(json.dumps(dict(zip(columns, row))) + "\n" for row in rows)
    else:
        separator = "," if file_format == "csv" else "\t"
        text = "".join(separator.join(map(str, row)) + "\n" for row in [columns, *rows])
    path.write_text(text, encoding="utf-8")
    return path


logs = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 4), st.sampled_from(ID_SPELLINGS)),
    min_size=4,  # shorter logs rarely leave anyone to evaluate; a few of these still do
    max_size=30,
)


@SETTINGS
@given(
    log=logs,
    file_format=st.sampled_from(("csv", "tsv", "jsonl")),
    items_format=st.sampled_from(("csv", "jsonl")),
    items_spelling=st.sampled_from(ID_SPELLINGS),
)
def test_load_and_prepare_follow_the_protocol(log, file_format, items_format, items_spelling):
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        rows = [[f"u{user}", _spell(item, spelling, file_format), time] for user, item, time, spelling in log]
        path = _write(directory, "log", file_format, ["user_id", "item_id", "timestamp"], rows)
        metadata_rows = [[_spell(item, items_spelling, items_format), f"Title {item}"] for item in range(10)]
        items = _write(directory, "items", items_format, ["item_id", "title"], metadata_rows)

        # Loading: ids normalised, whatever their spelling; rows numbered from 1 in file order.
        loaded = load_interactions(path)
        assert loaded["user_id"].tolist() == [f"u{user}" for user, *_ in log]
        assert loaded["item_id"].tolist() == [str(item) for _, item, _, _ in log]
        assert loaded["timestamp"].tolist() == [time for _, _, time, _ in log]
        assert loaded["row"].tolist() == list(range(1, len(log) + 1))

        # Expected sequences: per user in order of first appearance, stable sort by time.
        sequences: dict[str, list[str]] = {}
        for user, item, _time, _ in sorted(log, key=lambda row: row[2]):  # sorted() is stable
            sequences.setdefault(f"u{user}", []).append(str(item))
        first_seen = list(dict.fromkeys(f"u{user}" for user, *_ in log))
        evaluated = [user for user in first_seen if len(sequences[user]) >= 3]

        config = DataConfig(dataset=str(path), items=str(items))
        event("no user evaluated" if not evaluated else "some users evaluated")
        if not evaluated:
            with pytest.raises(DataValidationError, match="no user has enough interactions") as caught:
                prepare_data(config)
            assert str(path) in str(caught.value)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every item has metadata under some spelling of its id
            prepared = prepare_data(config)

    catalog = prepared.catalog
    # The catalogue covers every item of the log, in numeric order, with the metadata's texts.
    assert catalog.item_ids == [str(i) for i in sorted({item for _, item, _, _ in log})]
    assert catalog.texts == [f"Title {i}" for i in catalog.item_ids]
    report = prepared.report
    assert report["n_users_evaluated"] == len(evaluated)
    assert report["n_users_too_short"] == len(sequences) - len(evaluated)
    assert report["n_interactions"] == len(log)

    names = lambda rows: [catalog.item_id(row) for row in rows]  # noqa: E731
    splits = prepared.splits
    assert splits["test"]["user_id"] == splits["validation"]["user_id"] == evaluated
    for test, validation in zip(splits["test"], splits["validation"]):
        sequence = sequences[test["user_id"]]
        # Leave-one-out partitions each sequence: history + target is the whole sequence.
        assert names(test["history"]) + [catalog.item_id(test["target"])] == sequence
        assert names(validation["history"]) + [catalog.item_id(validation["target"])] == sequence[:-1]
    trained = {row["user_id"]: names(row["items"]) for row in splits["train"]}
    for user, sequence in sequences.items():
        if len(sequence) >= 3:
            assert trained[user] == sequence[:-2]  # the targets never leak into training
        elif len(sequence) == 2:
            assert trained[user] == sequence  # not evaluated, but its one transition still trains
        else:
            assert user not in trained


# ----------------------------------------------------------------------------- the next-item pipeline

N_ITEMS = 30
MAX_LEN = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """`model` and `recommend` (conftest.py) load this checkpoint."""
    torch.manual_seed(0)
    catalog = ItemCatalog([str(i) for i in range(1, N_ITEMS + 1)], [f"Film {i} ({1970 + i})" for i in range(1, N_ITEMS + 1)])
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=MAX_LEN)
    with torch.no_grad():
        model.item_table.weight.mul_(20)  # spread the scores
    model.item_catalog = catalog
    directory = tmp_path_factory.mktemp("property_checkpoint")
    model.save_pretrained(directory)
    save_item_popularity(directory, [[row % 7 for row in range(40)]], num_items=N_ITEMS)
    return directory


known_ids = st.integers(1, N_ITEMS).flatmap(
    lambda i: st.sampled_from([str(i), i, float(i), f" {i} ", f"{i}.0"])
)
unknown_ids = st.sampled_from(["x1", "nope", "0", 0, "31", 999, "1.5", ""])
ids = st.one_of(known_ids, known_ids, unknown_ids)  # mostly known


def _row(value: object) -> int | None:
    text = str(value).strip()
    number = float(text) if text.replace(".", "", 1).isdigit() else None
    if number is None or not number.is_integer() or not 1 <= number <= N_ITEMS:
        return None
    return int(number) - 1


@SETTINGS
@given(
    history=st.lists(ids, max_size=25),
    top_k=st.integers(1, 40),
    exclude_seen=st.booleans(),
    fallback=st.sampled_from([None, "popular"]),
    candidates=st.none() | st.lists(ids, min_size=1, max_size=10),
)
def test_any_history_gives_a_well_formed_ranking_or_a_clear_error(
    recommend, model, history, top_k, exclude_seen, fallback, candidates
):
    rows = [row for row in map(_row, history) if row is not None]
    candidate_rows = None if candidates is None else {row for row in map(_row, candidates) if row is not None}
    kwargs = {"top_k": top_k, "exclude_seen": exclude_seen, "fallback": fallback}
    if candidates is not None:
        kwargs["candidates"] = candidates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown ids are reported by warnings, tested elsewhere
        event("error" if (candidate_rows is not None and not candidate_rows) or (not rows and fallback is None) else "ranked")
        if candidate_rows is not None and not candidate_rows:
            with pytest.raises(ValueError, match="none of the .* candidates is in the catalogue"):
                recommend({"history": history}, **kwargs)
            return
        if not rows and fallback is None:
            with pytest.raises(ValueError, match="history is empty|none of the .* history items"):
                recommend({"history": history}, **kwargs)
            return
        result = recommend({"history": history}, **kwargs)

    allowed = set(range(N_ITEMS)) if candidate_rows is None else candidate_rows
    if exclude_seen:
        allowed -= set(rows)
    assert len(result) == min(top_k, len(allowed))
    assert [r["rank"] for r in result] == list(range(1, len(result) + 1))
    got_rows = [int(r["item_id"]) - 1 for r in result]
    assert len(set(got_rows)) == len(got_rows) and set(got_rows) <= allowed  # never a seen item when excluded
    assert all(r["text"] == f"Film {r['item_id']} ({1970 + int(r['item_id'])})" for r in result)
    scores = [r["score"] for r in result]
    assert all(math.isfinite(s) for s in scores)
    assert all(a >= b for a, b in zip(scores, scores[1:]))  # non-increasing
    if rows:
        # The scores are the model's own, on the most recent max_len known items (repeats included).
        with torch.no_grad():
            logits = model(torch.tensor([rows[-MAX_LEN:]]), return_logits=True).logits[0]
        assert scores == pytest.approx([logits[row].item() for row in got_rows], abs=1e-5)
        best_left = max((logits[row].item() for row in allowed - set(got_rows)), default=-math.inf)
        assert not scores or scores[-1] >= best_left - 1e-6  # nothing better was left out
