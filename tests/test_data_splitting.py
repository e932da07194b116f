"""k-core filtering, chronological user sequences and the leave-one-out protocol."""

from __future__ import annotations

import pandas as pd
import pytest
from datasets import Features, List, Value
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_seqrec.data import DataValidationError, k_core_filter, leave_one_out, user_sequences


def frame(pairs, timestamps=None) -> pd.DataFrame:
    data = {"user_id": [u for u, _ in pairs], "item_id": [i for _, i in pairs]}
    if timestamps is not None:
        data["timestamp"] = timestamps
    return pd.DataFrame(data)


# ---------------------------------------------------------------- k-core


def test_k_core_repeats_until_stable():
    # Item c has one interaction; dropping it leaves user v with one, which only a
    # second pass notices.
    pairs = [("u", "a"), ("u", "b"), ("w", "a"), ("w", "b"), ("v", "b"), ("v", "c"), ("x", "a"), ("x", "b")]
    kept = k_core_filter(frame(pairs), 2)
    assert sorted(zip(kept["user_id"], kept["item_id"])) == sorted(p for p in pairs if p[0] != "v")
    assert kept.index.tolist() == [0, 1, 2, 3, 6, 7]  # original rows, original order


def test_k_core_cascade_can_need_several_rounds():
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "c"), ("u3", "d")]
    # A chain: the end items have one interaction, and removing them unravels everything.
    with pytest.raises(DataValidationError) as caught:
        k_core_filter(frame(pairs), 2)
    message = str(caught.value)
    assert "2-core" in message and "3 users" in message and "4 items" in message and "k_core" in message


@pytest.mark.parametrize("k", [0, 1])
def test_k_core_of_one_or_less_returns_the_input(k):
    data = frame([("u", "a")])
    assert k_core_filter(data, k) is data


def naive_k_core(pairs: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    while True:
        users = pd.Series([u for u, _ in pairs]).value_counts()
        items = pd.Series([i for _, i in pairs]).value_counts()
        kept = [(u, i) for u, i in pairs if users[u] >= k and items[i] >= k]
        if kept == pairs:
            return pairs
        pairs = kept


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("pqrstu")), min_size=1, max_size=40),
    k=st.integers(2, 4),
)
def test_k_core_matches_a_naive_fixed_point(pairs, k):
    expected = naive_k_core(pairs, k)
    if not expected:
        with pytest.raises(DataValidationError):
            k_core_filter(frame(pairs), k)
        return
    kept = k_core_filter(frame(pairs), k)
    assert list(zip(kept["user_id"], kept["item_id"])) == expected
    assert kept["user_id"].value_counts().min() >= k and kept["item_id"].value_counts().min() >= k


# ---------------------------------------------------------------- sequences


def test_user_sequences_sort_by_time_and_keep_file_order_for_ties():
    pairs = [("u", "late"), ("v", "x"), ("u", "tie1"), ("u", "early"), ("u", "tie2"), ("v", "y")]
    timestamps = [30, 5, 20, 10, 20, 1]
    sequences = user_sequences(frame(pairs, timestamps))
    assert list(sequences) == ["u", "v"]  # order of first appearance, not of first timestamp
    assert sequences == {"u": ["early", "tie1", "tie2", "late"], "v": ["y", "x"]}


def test_user_sequences_without_timestamps_use_file_order():
    sequences = user_sequences(frame([("b", "3"), ("a", "1"), ("b", "2")]))
    assert sequences == {"b": ["3", "2"], "a": ["1"]}
    assert list(sequences) == ["b", "a"]


def test_user_sequences_of_nothing():
    assert user_sequences(frame([], [])) == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("uvwxyz"), st.integers(0, 20), st.integers(0, 3)), max_size=50))
def test_user_sequences_equal_a_stable_python_sort(rows):
    data = frame([(u, str(i)) for u, i, _ in rows], [t for _, _, t in rows])
    expected: dict[str, list[str]] = {}
    for u, i, _ in sorted(rows, key=lambda row: row[2]):  # Python's sort is stable
        expected.setdefault(u, []).append(str(i))
    sequences = user_sequences(data)
    assert sequences == expected
    assert list(sequences) == list(dict.fromkeys(u for u, _, _ in rows))


# ---------------------------------------------------------------- leave-one-out


def test_leave_one_out_on_a_hand_built_example():
    splits, report = leave_one_out({"a": [1, 2, 3, 4, 5], "b": [7, 8, 9], "c": [4, 6], "d": [3]})
    assert splits["train"].to_list() == [
        {"user_id": "a", "items": [1, 2, 3]},
        {"user_id": "b", "items": [7]},
        {"user_id": "c", "items": [4, 6]},  # too short to evaluate, still one transition to learn
    ]
    assert splits["validation"].to_list() == [
        {"user_id": "a", "history": [1, 2, 3], "target": 4},
        {"user_id": "b", "history": [7], "target": 8},
    ]
    assert splits["test"].to_list() == [
        {"user_id": "a", "history": [1, 2, 3, 4], "target": 5},
        {"user_id": "b", "history": [7, 8], "target": 9},
    ]
    assert report == {"n_users": 4, "n_users_evaluated": 2, "n_users_too_short": 2}


def test_leave_one_out_features_are_explicit():
    splits, _ = leave_one_out({"a": [1, 2, 3]})
    assert splits["train"].features == Features({"user_id": Value("string"), "items": List(Value("int64"))})
    assert splits["test"].features == Features(
        {"user_id": Value("string"), "history": List(Value("int64")), "target": Value("int64")}
    )


def test_leave_one_out_needs_three_items_somewhere():
    with pytest.raises(DataValidationError) as caught:
        leave_one_out({"a": [1, 2], "b": [3]})
    assert "at least 3 interactions" in str(caught.value) and "2 users" in str(caught.value)


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=4), st.lists(st.integers(0, 50), max_size=12), max_size=15))
def test_leave_one_out_preserves_items_order_and_sizes(sequences):
    if not any(len(items) >= 3 for items in sequences.values()):
        with pytest.raises(DataValidationError):
            leave_one_out(sequences)
        return
    splits, report = leave_one_out(sequences)
    evaluated = [u for u, items in sequences.items() if len(items) >= 3]
    trained = [u for u, items in sequences.items() if len(items) >= 2]
    assert report == {
        "n_users": len(sequences), "n_users_evaluated": len(evaluated),
        "n_users_too_short": len(sequences) - len(evaluated),
    }
    assert splits["train"]["user_id"] == trained and splits["test"]["user_id"] == evaluated
    assert splits["validation"]["user_id"] == evaluated
    train = dict(zip(splits["train"]["user_id"], splits["train"]["items"]))
    for validation, test in zip(splits["validation"], splits["test"]):
        items = sequences[test["user_id"]]
        # Every item, in order: train, then the validation target, then the test target.
        assert train[test["user_id"]] + [validation["target"], test["target"]] == items
        assert validation["history"] == train[test["user_id"]]
        assert test["history"] == validation["history"] + [validation["target"]]
    for user in trained:
        if user not in set(evaluated):
            assert train[user] == sequences[user]
