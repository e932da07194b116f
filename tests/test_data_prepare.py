"""prepare_data end to end: config validation, catalogue, report, and the real MovieLens-100K."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from hf_seqrec.data import DataConfig, DataValidationError, ItemCatalog, PreparedData, load_builtin, prepare_data

INTERACTIONS = """user_id,item_id,timestamp,rating
u1,10,1,5
u1,2,2,4
u1,3,3,1
u1,10,4,5
u2,2,1,3
u2,3,2,5
u2,99,3,4
u3,3,1,5
"""
ITEMS = """item_id,title,genres
2,Two,Drama
3,Three,
10,Ten,Comedy
500,Unused,Horror
"""


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path) -> tuple[str, str]:
    return write(tmp_path, "ratings.csv", INTERACTIONS), write(tmp_path, "items.csv", ITEMS)


def test_prepare_from_files(files):
    ratings, items = files
    with pytest.warns(UserWarning, match=r"1 of 4 items .* no text .*\['99'\]"):
        prepared = prepare_data(DataConfig(dataset=ratings, items=items, rating_column="rating"))
    assert isinstance(prepared, PreparedData) and isinstance(prepared.catalog, ItemCatalog)
    catalog = prepared.catalog
    assert catalog.item_ids == ["2", "3", "10", "99"]  # numeric ids in numeric order
    assert catalog.texts == ["Two | Drama", "Three", "Ten | Comedy", "item 99"]
    assert prepared.report == {
        "n_interactions": 8,
        "n_interactions_dropped_by_rating": 0,
        "n_interactions_dropped_by_k_core": 0,
        "n_users": 3,
        "n_users_evaluated": 2,
        "n_users_too_short": 1,
        "n_items": 4,
        "k_core": 0,
        "timestamp_column": "timestamp",
        "n_metadata_items_unused": 1,
        "n_items_without_metadata": 1,
    }
    test = {row["user_id"]: row for row in prepared.splits["test"]}
    assert catalog.item_ids[test["u1"]["target"]] == "10"
    assert [catalog.item_ids[i] for i in test["u1"]["history"]] == ["10", "2", "3"]
    assert [catalog.item_ids[i] for i in prepared.splits["validation"]["history"][1]] == ["2"]
    assert prepared.splits["train"]["user_id"] == ["u1", "u2"]  # u3 has one item: nothing to learn


def test_rating_filter_is_applied_and_reported(files):
    ratings, _ = files
    prepared = prepare_data(DataConfig(dataset=ratings, rating_column="rating", min_rating=4))
    # Ratings >= 4 leave u1: 10, 2, 10 ; u2: 3, 99 ; u3: 3.
    assert prepared.report["n_interactions_dropped_by_rating"] == 2
    assert prepared.report["n_interactions"] == 6
    assert prepared.catalog.item_ids == ["2", "3", "10", "99"]
    assert [prepared.catalog.item_id(i) for i in prepared.splits["test"]["history"][0]] == ["10", "2"]


def test_k_core_is_applied_and_reported(files):
    ratings, _ = files
    prepared = prepare_data(DataConfig(dataset=ratings, k_core=2))
    # u3 (one interaction) and item 99 (one interaction) go; everyone left has >= 2.
    assert prepared.catalog.item_ids == ["2", "3", "10"]
    assert prepared.report["n_interactions_dropped_by_k_core"] == 2
    assert (prepared.report["n_users"], prepared.report["n_users_evaluated"]) == (2, 1)
    assert prepared.report["k_core"] == 2


def test_every_item_without_metadata_file_gets_a_placeholder_text(files):
    ratings, _ = files
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no metadata file given: not worth a warning
        prepared = prepare_data(DataConfig(dataset=ratings, timestamp_column=None))
    assert prepared.catalog.texts == ["item 2", "item 3", "item 10", "item 99"]
    assert prepared.report["n_items_without_metadata"] == 4


NO_TIMESTAMPS = "user_id,item_id\nu1,30\nu1,20\nu1,10\nu2,5\nu2,30\nu2,20\n"


def test_a_file_without_timestamps_is_read_in_file_order_with_a_notice_naming_it(tmp_path):
    ratings = write(tmp_path, "no_time.csv", NO_TIMESTAMPS)
    with pytest.warns(UserWarning, match=r"no_time\.csv has no 'timestamp' column.*--timestamp_column none"):
        prepared = prepare_data(DataConfig(dataset=ratings))
    test = {row["user_id"]: row for row in prepared.splits["test"]}
    assert [prepared.catalog.item_id(i) for i in test["u1"]["history"]] == ["30", "20"]  # file order, not id order
    assert prepared.catalog.item_id(test["u1"]["target"]) == "10"
    assert prepared.report["timestamp_column"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said explicitly: no notice
        explicit = prepare_data(DataConfig(dataset=ratings, timestamp_column=None))
    assert explicit.splits["test"]["target"] == prepared.splits["test"]["target"]


def test_a_timestamp_column_named_by_the_user_must_exist(tmp_path):
    ratings = write(tmp_path, "no_time.csv", NO_TIMESTAMPS)
    for name in ("timestamp", "ts"):
        with pytest.raises(DataValidationError, match=f"no column '{name}'") as caught:
            prepare_data(DataConfig(dataset=ratings, timestamp_column=name))
        assert "no_time.csv" in str(caught.value) and "--timestamp_column none" in str(caught.value)


def test_auto_uses_the_timestamp_column_when_there_is_one(files):
    ratings, _ = files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare_data(DataConfig(dataset=ratings))
    assert prepared.report["timestamp_column"] == "timestamp"


def test_text_ids_are_sorted_lexicographically(tmp_path):
    ratings = write(tmp_path, "r.jsonl", '{"user_id": 1, "item_id": "b"}\n{"user_id": 1, "item_id": "a"}\n'
                                         '{"user_id": 1, "item_id": "10"}\n')
    prepared = prepare_data(DataConfig(dataset=ratings, timestamp_column=None))
    assert prepared.catalog.item_ids == ["10", "a", "b"]
    assert prepared.splits["test"]["target"] == [prepared.catalog.index("10")]


def test_metadata_that_matches_no_interaction_names_both_files(tmp_path, files):
    ratings, _ = files
    items = write(tmp_path, "meta.csv", "item_id,title\nitem_2,Two\nitem_3,Three\n")
    with pytest.raises(DataValidationError) as caught:
        prepare_data(DataConfig(dataset=ratings, items=items))
    message = str(caught.value)
    assert "meta.csv" in message and "ratings.csv" in message
    assert "'item_2'" in message and "'2'" in message


def test_missing_dataset_file_mentions_the_builtins(tmp_path):
    with pytest.raises(DataValidationError, match="movielens-100k") as caught:
        prepare_data(DataConfig(dataset=str(tmp_path / "missing.csv")))
    assert "missing.csv" in str(caught.value)


def test_min_rating_that_drops_everything(files):
    ratings, _ = files
    with pytest.raises(DataValidationError, match="rating >= 6"):
        prepare_data(DataConfig(dataset=ratings, rating_column="rating", min_rating=6))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k_core": -1}, TypeError, "k_core"),
        ({"k_core": "5"}, TypeError, "k_core"),
        ({"k_core": True}, TypeError, "k_core"),
        ({"dataset": ""}, TypeError, "dataset"),
        ({"user_column": None}, TypeError, "user_column"),
        ({"timestamp_column": 3}, TypeError, "timestamp_column"),
        ({"min_rating": "4"}, TypeError, "min_rating"),
        ({"dataset": "r.csv", "min_rating": 4}, ValueError, "rating_column"),
        ({"item_text_fields": "title"}, TypeError, "item_text_fields"),
        ({"item_text_fields": ["title"], "item_text_template": "{title}"}, ValueError, "not both"),
        ({"file_format": "xlsx"}, ValueError, "file_format"),
        ({"delimiter": ",,"}, ValueError, "delimiter"),
        ({"items": "items.csv"}, ValueError, "built-in"),
    ],
)
def test_config_is_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataConfig(**kwargs)


def test_config_accepts_paths(tmp_path):
    assert DataConfig(dataset=tmp_path / "r.csv").dataset == str(tmp_path / "r.csv")


# ---------------------------------------------------------------- real MovieLens-100K


def test_movielens_100k_preparation():
    start = time.perf_counter()
    prepared = prepare_data(DataConfig())
    assert time.perf_counter() - start < 10
    report = prepared.report
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (943, 1682, 100_000)
    assert (report["n_users_evaluated"], report["n_users_too_short"]) == (943, 0)
    assert report["n_items_without_metadata"] == 0 and report["n_metadata_items_unused"] == 0
    catalog = prepared.catalog
    assert catalog.item_ids[:3] == ["1", "2", "3"] and catalog.item_ids[-1] == "1682"
    assert catalog.text(catalog.index("1")) == "Toy Story (1995) | Animation, Children's, Comedy"

    interactions, _ = load_builtin("movielens-100k")
    # ML-100K has no repeated (user, item) pair, so items = train + validation target + test target.
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    lengths = interactions["user_id"].value_counts()
    splits = prepared.splits
    for train, test in zip(splits["train"], splits["test"]):
        assert len(train["items"]) + 2 == lengths[train["user_id"]] == len(test["history"]) + 1
    assert sum(len(items) for items in splits["train"]["items"]) + 2 * 943 == 100_000

    # One user checked against the raw data: the test target is the latest interaction
    # (among equal latest timestamps, the one that comes last in the file).
    user = splits["test"][0]["user_id"]
    rows = interactions[interactions["user_id"] == user].sort_values("timestamp", kind="stable")
    assert catalog.item_id(splits["test"][0]["target"]) == rows["item_id"].iloc[-1]
    assert catalog.item_id(splits["validation"][0]["target"]) == rows["item_id"].iloc[-2]
