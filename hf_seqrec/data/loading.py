"""Read interactions and item metadata from files or in-memory tables, and validate them.

Everything a user can hand us (csv, tsv, parquet, jsonl, a ``datasets.Dataset``, a
``pandas.DataFrame``) is turned into one small, strict table shape, so that the rest of
the library never has to wonder what an id or a timestamp looks like. Every problem
with the user's data raises :class:`DataValidationError` naming the file, the line (for
text files) or row, the field, what was found and what was expected: a user should be
able to fix their file from the message alone.

csv and tsv are parsed with pyarrow because, unlike pandas' C parser, it refuses rows
with too few or too many fields instead of padding or truncating them silently. The
slower pure-Python ``csv`` module is used only after something went wrong, to find the
exact line to report.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from .errors import DataValidationError

SUPPORTED_FORMATS: tuple[str, ...] = ("csv", "tsv", "parquet", "jsonl")

# Extension -> format. Checked from the last suffix backwards, skipping compression
# suffixes, so "ratings.csv.gz" is csv and "MovieLens100k_data.parquet.brotli" is parquet.
_FORMAT_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
# Suffixes pyarrow decompresses on the fly for text files (pa.input_stream(compression="detect")).
_TEXT_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".br", ".zst", ".lz4"}
# Parquet compresses inside the file; a trailing codec name is only a naming habit.
_PARQUET_CODEC_SUFFIXES = {".brotli", ".snappy", ".gzip", ".gz", ".zstd", ".zst", ".lz4"}

_DEFAULT_DELIMITER = {"csv": ",", "tsv": "\t"}
_DELIMITER_NAMES = {",": "comma (',')", "\t": "tab ('\\t')", ";": "semicolon (';')", "|": "pipe ('|')"}

# "12.0" written by a float column in some exporter is the same id as 12 and "12".
_INTEGRAL_FLOAT_TEXT = r"^([+-]?\d+)\.0*$"
_NEGATIVE_NUMBER_TEXT = r"-\d+(\.\d*)?"
_NAN_TEXT = r"[+-]?nan"


# --------------------------------------------------------------------------- columns

# The columns of the frames load_interactions and load_items return; the same names are the defaults
# looked for in a user's files.
USER_COLUMN = "user_id"
ITEM_COLUMN = "item_id"
TIMESTAMP_COLUMN = "timestamp"


@dataclass
class InteractionColumns:
    """Names of the columns that hold each part of an interaction in the user's data.

    ``timestamp=None`` means the data has no time column and the order of the rows in
    the file is each user's time order. ``rating=None`` means ratings are not loaded.
    ``timestamp_optional=True`` reads a source without the ``timestamp`` column in file order
    instead of refusing it (the result then has no ``timestamp`` column, which is how the caller
    learns it): for a column name nobody chose, only a default to try.
    """

    user: str = USER_COLUMN
    item: str = ITEM_COLUMN
    timestamp: str | None = TIMESTAMP_COLUMN
    rating: str | None = None
    timestamp_optional: bool = False

    def __post_init__(self) -> None:
        check_column_name("InteractionColumns.user", self.user)
        check_column_name("InteractionColumns.item", self.item)
        check_column_name("InteractionColumns.timestamp", self.timestamp, optional=True)
        check_column_name("InteractionColumns.rating", self.rating, optional=True)
        if self.user == self.item:
            raise ValueError(
                f"InteractionColumns.user and .item are both {self.user!r}; they must be different columns"
            )


@dataclass
class ItemColumns:
    """How to find an item's id and render its text from item metadata.

    ``template`` is a ``str.format`` template over the row's columns, for example
    ``"{title} | {genres}"``. Without it, ``text_fields`` (default: every column but
    the id) are joined with ``" | "``, skipping empty values. Setting both is refused
    because it would be unclear which one the user meant.
    """

    id: str = ITEM_COLUMN
    text_fields: list[str] | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        check_column_name("ItemColumns.id", self.id)
        self.text_fields = check_item_text_options(
            self.text_fields, self.template, fields_name="ItemColumns.text_fields", template_name="ItemColumns.template"
        )


def check_column_name(what: str, value: object, *, optional: bool = False) -> None:
    """Refuse anything but a non-empty column name (or None where ``optional``); ``what`` names the option."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        expected = "a column name (str) or None" if optional else "a column name (str)"
        raise TypeError(f"{what} must be {expected}; got {value!r}")


def check_item_text_options(
    text_fields: object, template: object, *, fields_name: str, template_name: str
) -> list[str] | None:
    """The rules of an item text: a list of column names, or a ``str.format`` template, not both.

    Returns ``text_fields`` as a list. Setting both is refused because it would be unclear which one
    the user meant. ``fields_name`` and ``template_name`` are how the caller's options are called.
    """
    if text_fields is not None:
        if isinstance(text_fields, str) or not all(isinstance(f, str) and f for f in text_fields):
            raise TypeError(f"{fields_name} must be a list of column names; got {text_fields!r}")
        text_fields = list(text_fields)
    if template is not None and (not isinstance(template, str) or not template):
        raise TypeError(f"{template_name} must be a str.format template such as '{{title}} | {{genres}}'; got {template!r}")
    if template is not None and text_fields is not None:
        raise ValueError(f"set either {fields_name} or {template_name}, not both")
    return text_fields


# --------------------------------------------------------------------------- tables


@dataclass
class _Table:
    """A source read into memory, plus what is needed to point a user at one of its rows.

    ``row`` numbers are 1-based data rows (a header is not counted). For text files the
    physical line of each row is worked out only when an error needs it, because it
    takes a slow pure-Python pass over the file.
    """

    frame: pd.DataFrame
    source: str
    path: Path | None = None
    file_format: str | None = None
    delimiter: str | None = None
    _lines: list[int] | None = field(default=None, repr=False)

    def line_of(self, row: int | None) -> int | None:
        if row is None or self.file_format not in ("csv", "tsv", "jsonl"):
            return None
        if self._lines is None:
            if self.file_format == "jsonl":
                self._lines = [line for line, _ in _jsonl_lines(self.path, self.source)]
            else:
                records = _delimited_records(self.path, self.delimiter, self.source)
                next(records, None)  # the header
                self._lines = [line for line, _ in records]
        return self._lines[row - 1] if 0 < row <= len(self._lines) else None

    def where(self, row: int) -> str:
        """Human words for a row: "line 7" in text files, "row 6" elsewhere."""
        line = self.line_of(row)
        return f"line {line}" if line is not None else f"row {row}"

    def error(self, problem: str, *, row: int | None = None, **details: Any) -> DataValidationError:
        return DataValidationError(problem, source=self.source, row=row, line=self.line_of(row), **details)


def _read_table(
    source: str | os.PathLike | datasets.Dataset | pd.DataFrame,
    file_format: str | None,
    delimiter: str | None,
) -> _Table:
    """Read any supported source into a :class:`_Table` with a clean 0..n-1 index."""
    if isinstance(source, pd.DataFrame):
        return _non_empty(_Table(source.reset_index(drop=True), "<pandas.DataFrame>"))
    if isinstance(source, datasets.DatasetDict):
        raise TypeError(f"pass one split of the DatasetDict (one of {list(source)}), not the whole DatasetDict")
    if isinstance(source, datasets.Dataset):
        return _non_empty(_Table(source.to_pandas(), "<datasets.Dataset>"))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "source must be a file path, a datasets.Dataset or a pandas.DataFrame; "
            f"got {type(source).__name__}"
        )
    path = Path(source)
    name = str(source)
    if not path.exists():
        raise DataValidationError("no such file or directory", source=name, expected="an existing file")
    if path.is_dir():
        return _non_empty(_read_saved_dataset(path, name))
    file_format = _resolve_format(path, file_format)
    if file_format == "parquet":
        table = _read_parquet(path, name)
    elif file_format == "jsonl":
        table = _read_jsonl(path, name)
    else:
        table = _read_delimited(path, name, file_format, delimiter or _DEFAULT_DELIMITER[file_format])
    return _non_empty(table)


def _non_empty(table: _Table) -> _Table:
    if len(table.frame) == 0:
        raise table.error("the data has no rows", expected="at least one data row")
    return table


def _resolve_format(path: Path, file_format: str | None) -> str:
    if file_format is not None:
        normalised = file_format.lower().lstrip(".")
        if normalised not in SUPPORTED_FORMATS:
            raise ValueError(f"file_format must be one of {SUPPORTED_FORMATS}; got {file_format!r}")
        return normalised
    skippable = _TEXT_COMPRESSION_SUFFIXES | _PARQUET_CODEC_SUFFIXES
    for suffix in reversed([s.lower() for s in path.suffixes]):
        if suffix in _FORMAT_BY_SUFFIX:
            return _FORMAT_BY_SUFFIX[suffix]
        if suffix not in skippable:
            break
    raise DataValidationError(
        "cannot tell the file format from the file name",
        source=str(path),
        found="".join(path.suffixes) or "no extension",
        expected="one of " + ", ".join(sorted(_FORMAT_BY_SUFFIX)) + " (optionally followed by .gz, .bz2, .zst)",
        hint=f"Pass file_format= one of {SUPPORTED_FORMATS}",
    )


def _read_saved_dataset(path: Path, name: str) -> _Table:
    """A directory written by ``datasets.Dataset.save_to_disk``; anything else is refused."""
    if not (path / "state.json").is_file() and not (path / "dataset_dict.json").is_file():
        raise DataValidationError(
            "this is a directory, not a data file",
            source=name,
            expected="a csv, tsv, parquet or jsonl file, or a directory written by datasets.Dataset.save_to_disk",
        )
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        raise DataValidationError(
            "this directory holds a DatasetDict", source=name, found=list(loaded), expected="a single Dataset",
            hint="Save one split (dataset_dict['train'].save_to_disk(...)) or pass that split directly",
        )
    return _Table(loaded.to_pandas(), name)


def _read_parquet(path: Path, name: str) -> _Table:
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DataValidationError(
            f"not a readable parquet file ({error})", source=name, expected="a parquet file"
        ) from None
    return _Table(frame.reset_index(drop=True), name, path, "parquet")


def _read_jsonl(path: Path, name: str) -> _Table:
    records = []
    for line_number, text in _jsonl_lines(path, name):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataValidationError(
                f"not valid JSON ({error.msg} at column {error.colno})", source=name, line=line_number,
                found=_shorten(text), expected="one JSON object per line",
            ) from None
        if not isinstance(record, dict):
            raise DataValidationError(
                "the line is JSON but not an object", source=name, line=line_number, found=_shorten(text),
                expected='one JSON object per line, like {"user_id": 1, "item_id": 5}',
            )
        records.append(record)
    if not records:
        raise DataValidationError("the file is empty", source=name, expected="one JSON object per line")
    return _Table(pd.DataFrame.from_records(records), name, path, "jsonl")


def _jsonl_lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for each non-blank line; blank lines are not records."""
    for line_number, text in enumerate(_decode_utf8(path, name).split("\n"), start=1):
        if text.strip():
            yield line_number, text


def _read_delimited(path: Path, name: str, file_format: str, delimiter: str) -> _Table:
    raw_header = _read_header(path, name, delimiter)
    # "user_id, item_id" is a common way to write a header; the spaces are not part of the names.
    header = [column.strip() for column in raw_header]
    _check_header(header, name, delimiter)
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            arrow_table = pa_csv.read_csv(
                stream,
                parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                # Everything is read as text: type inference would turn the id "007"
                # into 7 and decide a column's type from a sample of its rows.
                convert_options=pa_csv.ConvertOptions(
                    column_types={column: pa.string() for column in raw_header}, strings_can_be_null=False
                ),
            )
    except pa.ArrowInvalid as error:
        if "UTF8" in str(error) or "UTF-8" in str(error):
            _decode_utf8(path, name)  # raises with the line and byte offset
        raise _locate_bad_record(path, name, delimiter, header, error) from None
    table = _Table(arrow_table.to_pandas(), name, path, file_format, delimiter)
    table.frame.columns = header  # pyarrow drops a UTF-8 byte-order mark; keep names identical to the header we checked
    return table


def _read_header(path: Path, name: str, delimiter: str) -> list[str]:
    records = _delimited_records(path, delimiter, name)
    first = next(records, None)
    records.close()
    if first is None:
        raise DataValidationError(
            "the file is empty", source=name, expected="a header line naming the columns, then data rows"
        )
    return first[1]


def _check_header(header: list[str], name: str, delimiter: str) -> None:
    if len(header) == 1:
        for other, label in _DELIMITER_NAMES.items():
            if other != delimiter and other in header[0]:
                raise DataValidationError(
                    f"the header is a single column that contains the {label} delimiter, so the file seems to be "
                    f"separated by {label} rather than {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}",
                    source=name, line=1, found=header[0],
                    expected=f"columns separated by {_DELIMITER_NAMES.get(delimiter, repr(delimiter))}",
                    hint=f"Pass delimiter={other!r} (or file_format='tsv' for tab-separated files)",
                )
    seen: set[str] = set()
    for column in header:
        if column.strip() == "":
            raise DataValidationError(
                "the header has an empty column name", source=name, line=1, found=header,
                expected="a name for every column",
            )
        if column in seen:
            raise DataValidationError(
                f"the header names column '{column}' twice", source=name, line=1, field=column, found=header,
                expected="unique column names",
            )
        seen.add(column)


def _delimited_records(path: Path, delimiter: str | None, name: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line, fields) for each record of a csv/tsv, skipping blank lines.

    Used for the header and for error reports only: it is exact about line numbers
    (a quoted field may span lines) but much slower than pyarrow.
    """
    with pa.input_stream(str(path), compression="detect") as stream:
        # utf-8-sig: a byte-order mark written by Excel must not become part of the first column name.
        text = io.TextIOWrapper(io.BufferedReader(stream), encoding="utf-8-sig", newline="")
        reader = csv.reader(text, delimiter=delimiter or ",")
        next_line = 1
        try:
            for record in reader:
                start, next_line = next_line, reader.line_num + 1
                if record:
                    yield start, record
        except UnicodeDecodeError:
            _decode_utf8(path, name)
            raise
        except csv.Error as error:
            raise DataValidationError(
                f"cannot parse the file ({error})", source=name, line=reader.line_num,
                expected="fields separated by the delimiter, quotes closed on the same record",
            ) from None


def _locate_bad_record(
    path: Path, name: str, delimiter: str, header: list[str], arrow_error: Exception
) -> DataValidationError:
    """Turn a pyarrow parse failure into an error that names the offending line."""
    records = _delimited_records(path, delimiter, name)
    next(records, None)
    for row, (line, fields) in enumerate(records, start=1):
        if len(fields) != len(header):
            return DataValidationError(
                f"the line has {len(fields)} fields but the header has {len(header)}",
                source=name, row=row, line=line, found=_shorten(delimiter.join(fields)),
                expected=f"{len(header)} fields separated by {_DELIMITER_NAMES.get(delimiter, repr(delimiter))} "
                f"({', '.join(header)})",
                hint="Check for an unquoted delimiter inside a value, or a missing value",
            )
    return DataValidationError(f"cannot parse the file ({arrow_error})", source=name, expected="well-formed csv")


def _decode_utf8(path: Path, name: str) -> str:
    """The whole (decompressed) file as text; on a bad byte, an error naming its line and offset."""
    with pa.input_stream(str(path), compression="detect") as stream:
        data = stream.read()
    try:
        # Plain utf-8 (not utf-8-sig) so that error offsets count from the first byte of the file.
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataValidationError(
            "the file is not valid UTF-8 text", source=name, line=line,
            found=f"byte 0x{data[error.start]:02x} at byte offset {error.start}",
            expected="UTF-8 encoded text",
            hint="Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`",
        ) from None


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- fields


# What else a user can do about a missing column, beyond renaming it, by the column's role.
_MISSING_COLUMN_ADVICE = {
    "timestamps": "Rename the column, configure the column name, or pass --timestamp_column none "
    "(timestamp_column=None) to take each user's interactions in file order",
}


def _require_columns(table: _Table, wanted: dict[str, str | None]) -> None:
    """Every configured column must exist; suggest near misses such as 'userId' for 'user_id'."""
    available = [str(c) for c in table.frame.columns]
    for role, column in wanted.items():
        if column is None or column in table.frame.columns:
            continue
        suggestions = _close_names(column, available)
        hint = f"Did you mean {' or '.join(repr(s) for s in suggestions)}? " if suggestions else ""
        raise table.error(
            f"there is no column '{column}' for the {role}",
            field=column, found=available, expected=f"a column named '{column}'",
            hint=hint + _MISSING_COLUMN_ADVICE.get(role, "Rename the column or configure the column name"),
        )


def _close_names(name: str, available: list[str]) -> list[str]:
    squash = lambda text: re.sub(r"[^a-z0-9]", "", text.lower())  # noqa: E731 - user_id ~ userId ~ UserID
    same = [c for c in available if squash(c) == squash(name)]
    if same:
        return same
    by_squashed = {squash(c): c for c in available}
    close = difflib.get_close_matches(squash(name), list(by_squashed), n=3, cutoff=0.6)
    return [by_squashed[c] for c in close]


def _first_bad(mask: pd.Series) -> tuple[int, int] | None:
    """(1-based row of the first True, how many are True), or None when all are False."""
    positions = np.flatnonzero(mask.to_numpy(dtype=bool))
    return (int(positions[0]) + 1, len(positions)) if len(positions) else None


def _more(count: int) -> str:
    return f" ({count - 1} more rows like this)" if count > 1 else ""


def _scalar_text(value: object) -> str | None:
    """One cell as text; None for a missing value. Integral floats lose their '.0'."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if math.isfinite(value) and float(value).is_integer() else str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(values) and not values.isna().any():
        return values.astype(str)  # fast path for the common case of int ids
    if pd.api.types.is_string_dtype(values) and values.dtype != object:
        return values
    return values.map(_scalar_text, na_action="ignore").astype("str")


def _normalise_ids(values: pd.Series) -> pd.Series:
    """Ids as stripped strings, so that 12, 12.0, "12" and " 12 " are the same id."""
    text = _as_text(values).str.strip()
    return text.str.replace(_INTEGRAL_FLOAT_TEXT, r"\1", regex=True)


def _checked_ids(table: _Table, column: str, role: str) -> pd.Series:
    raw = table.frame[column]
    ids = _normalise_ids(raw)
    # NaN (a float NaN, or the text "NaN" written by an exporter) marks a missing value, not an id.
    not_a_number = ids.str.fullmatch(_NAN_TEXT, case=False).fillna(False).astype(bool)
    missing = _first_bad(ids.isna() | (ids == "") | not_a_number)
    if missing:
        row, count = missing
        found = _found(raw, row)
        is_nan = bool(not_a_number.iloc[row - 1]) or (isinstance(found, float) and math.isnan(found))
        raise table.error(
            f"the {role} is {'NaN (a missing value)' if is_nan else 'empty'}{_more(count)}", row=row, field=column,
            found=found, expected=f"a non-empty {role} on every row",
            hint="Drop the rows without an id, or fill them in" if is_nan else None,
        )
    negative = _first_bad(ids.str.fullmatch(_NEGATIVE_NUMBER_TEXT))
    if negative:
        row, count = negative
        raise table.error(
            f"the {role} is negative{_more(count)}", row=row, field=column, found=_found(raw, row),
            expected="a non-negative number or a text id",
            hint="Negative ids usually mark padding or missing values; drop those rows",
        )
    return ids.astype("str")


def _found(values: pd.Series, row: int) -> object:
    value = values.iloc[row - 1]
    return value.item() if isinstance(value, np.generic) else value


def _checked_timestamps(table: _Table, column: str) -> pd.Series:
    """Epoch seconds (int64 when whole, else float64) from numbers, numeric text or ISO-8601."""
    raw = table.frame[column]
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(raw):
        return _datetimes_to_seconds(table, column, raw, raw)
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return _whole_if_possible(
            _checked_numbers(table, column, raw.astype("float64"), raw, "timestamp", _TIMESTAMP_EXPECTED)
        )
    text = raw.map(_scalar_text, na_action="ignore").astype("str").str.strip()
    missing = _first_bad(text.isna() | (text == ""))
    if missing:
        row, count = missing
        raise table.error(
            f"the timestamp is empty{_more(count)}", row=row, field=column, found=_found(raw, row),
            expected=_TIMESTAMP_EXPECTED,
        )
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().any():
        # Numeric timestamps: every row must be a number (a mix with dates is ambiguous).
        return _whole_if_possible(_checked_numbers(table, column, numbers, raw, "timestamp", _TIMESTAMP_EXPECTED))
    dates = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    return _datetimes_to_seconds(table, column, dates, raw)


_TIMESTAMP_EXPECTED = "a number (e.g. Unix seconds) or an ISO-8601 date-time such as 2021-03-04T05:06:07 on every row"


def _datetimes_to_seconds(table: _Table, column: str, dates: pd.Series, raw: pd.Series) -> pd.Series:
    bad = _first_bad(dates.isna())
    if bad:
        row, count = bad
        raise table.error(
            f"the timestamp is not a valid date-time{_more(count)}", row=row, field=column,
            found=_found(raw, row), expected=_TIMESTAMP_EXPECTED,
        )
    if dates.dt.tz is None:
        dates = dates.dt.tz_localize("UTC")  # naive times are read as UTC so that runs do not depend on the machine
    seconds = (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return _whole_if_possible(seconds)


def _checked_numbers(
    table: _Table, column: str, numbers: pd.Series, raw: pd.Series, role: str, expected: str
) -> pd.Series:
    numbers = numbers.astype("float64")
    bad = _first_bad(~np.isfinite(numbers.fillna(np.inf)))
    if bad:
        row, count = bad
        raise table.error(
            f"the {role} is not a finite number{_more(count)}", row=row, field=column, found=_found(raw, row),
            expected=expected,
        )
    return numbers


def _whole_if_possible(numbers: pd.Series) -> pd.Series:
    values = numbers.to_numpy(dtype="float64")
    if np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53):
        return pd.Series(values.astype("int64"), index=numbers.index)
    return pd.Series(values, index=numbers.index)


def _checked_ratings(table: _Table, column: str) -> pd.Series:
    raw = table.frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        numbers = raw.astype("float64")
    else:
        numbers = pd.to_numeric(raw.map(_scalar_text, na_action="ignore").astype("str").str.strip(), errors="coerce")
    return _checked_numbers(table, column, numbers, raw, "rating", "a number on every row")


# --------------------------------------------------------------------------- interactions


def load_interactions(
    source: str | os.PathLike | datasets.Dataset | pd.DataFrame,
    columns: InteractionColumns | None = None,
    *,
    file_format: str | None = None,
    delimiter: str | None = None,
) -> pd.DataFrame:
    """Load user-item interactions into the one table shape the rest of hf_seqrec uses.

    Args:
        source: a csv/tsv/parquet/jsonl file (format from the extension, which may be
            followed by a compression suffix such as ``.gz``; ``.parquet.brotli`` is
            parquet), a directory written by ``Dataset.save_to_disk``, a
            ``datasets.Dataset`` or a ``pandas.DataFrame``.
        columns: which of the source's columns hold the user, item, timestamp and rating.
        file_format: ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"``; overrides the extension.
        delimiter: field separator for csv/tsv (default ``","`` / ``"\\t"``); ignored otherwise.

    Returns:
        A DataFrame with, in this order:

        - ``user_id``, ``item_id`` (str): ids normalised so that 12, 12.0, "12" and " 12 "
          are one id, because the same id is often an int in one file and text in another.
        - ``timestamp`` (int64, or float64 when fractional): seconds since the Unix epoch.
          Numeric values are kept as they are; ISO-8601 date-times are converted (naive
          ones as UTC). Absent when ``columns.timestamp is None``: then the row order of
          the source is each user's time order.
        - ``rating`` (float64): only when ``columns.rating`` is set.
        - ``row`` (int64): the 1-based data row in the source. The header is *not*
          counted, so in a csv/tsv without blank lines or multi-line values row ``r``
          is on line ``r + 1``; in jsonl, row ``r`` is the ``r``-th non-blank line.
          Error messages name the exact line of text files.

    Raises:
        DataValidationError: for anything wrong with the data itself.
    """
    columns = columns or InteractionColumns()
    table = _read_table(source, file_format, delimiter)
    timestamp = columns.timestamp
    if columns.timestamp_optional and timestamp not in table.frame.columns:
        timestamp = None  # file order; the caller sees the missing column in the result
    _require_columns(
        table,
        {
            "user ids": columns.user,
            "item ids": columns.item,
            "timestamps": timestamp,
            "ratings": columns.rating,
        },
    )
    result = pd.DataFrame(
        {
            "user_id": _checked_ids(table, columns.user, "user id"),
            "item_id": _checked_ids(table, columns.item, "item id"),
        }
    )
    if timestamp is not None:
        result["timestamp"] = _checked_timestamps(table, timestamp)
    if columns.rating is not None:
        result["rating"] = _checked_ratings(table, columns.rating)
    result["row"] = np.arange(1, len(result) + 1, dtype="int64")
    return result


# --------------------------------------------------------------------------- items


def load_items(
    source: str | os.PathLike | datasets.Dataset | pd.DataFrame,
    columns: ItemColumns | None = None,
    *,
    file_format: str | None = None,
    delimiter: str | None = None,
) -> pd.DataFrame:
    """Load item metadata and render one text per item.

    The text is what initialises an item's embedding from the language model, so it
    should read like a short description: with ``columns.template`` it is that
    ``str.format`` template filled from the row; otherwise ``columns.text_fields``
    (default: every column but the id) joined by ``" | "`` with empty values left out.
    List values (from jsonl or a Dataset) are joined with ``", "``.

    Returns:
        A DataFrame with ``item_id`` (str, normalised like interaction ids) and ``text``
        (str, possibly empty when every field is empty), one row per item in source order.
        Rows repeating an id with the same text are dropped (the first is kept).

    Raises:
        DataValidationError: for a missing column, a template naming an unknown column,
            an empty or negative id, or an id given twice with different texts.
    """
    columns = columns or ItemColumns()
    table = _read_table(source, file_format, delimiter)
    _require_columns(table, {"item ids": columns.id})
    item_ids = _checked_ids(table, columns.id, "item id")
    if columns.template is not None:
        texts = _render_template(table, columns.template)
    else:
        fields = columns.text_fields
        if fields is None:
            fields = [c for c in table.frame.columns if c != columns.id]
        _require_columns(table, {f"text field {name!r}": name for name in fields})
        texts = _join_fields(table.frame, fields)
    items = pd.DataFrame({"item_id": item_ids, "text": pd.Series(texts, dtype="str", index=item_ids.index)})
    return _drop_duplicate_items(table, items, columns.id)


def _cell_text(value: object) -> str:
    """A metadata cell as display text: '' for missing, lists joined by ', '."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(text for text in (_cell_text(v) for v in value) if text)
    text = _scalar_text(value)
    return "" if text is None or (not isinstance(value, str) and pd.isna(value)) else text.strip()


def _join_fields(frame: pd.DataFrame, fields: list[str]) -> list[str]:
    rows = frame[fields].itertuples(index=False, name=None)
    return [" | ".join(text for text in map(_cell_text, row) if text) for row in rows]


def _render_template(table: _Table, template: str) -> list[str]:
    names = _template_fields(table, template)
    available = [str(c) for c in table.frame.columns]
    for name in names:
        if name not in table.frame.columns:
            suggestions = _close_names(name, available)
            raise table.error(
                f"the item text template refers to '{{{name}}}' but there is no such column",
                field=name, found=available, expected="template fields that name columns of the item file",
                hint=(f"Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else None),
            )
    rows = table.frame[names].itertuples(index=False, name=None)
    try:
        return [template.format(**dict(zip(names, map(_cell_text, row)))).strip() for row in rows]
    except (ValueError, AttributeError, IndexError, KeyError) as error:
        raise DataValidationError(
            f"the item text template cannot be applied ({error})", source=table.source, found=template,
            expected="a str.format template such as '{title} | {genres}'",
        ) from None


def _template_fields(table: _Table, template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise DataValidationError(
            f"the item text template is not a valid str.format template ({error})", source=table.source,
            found=template, expected="a template such as '{title} | {genres}' (write '{{' for a literal brace)",
        ) from None
    names: list[str] = []
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        name = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if name == "" or name.isdigit():
            raise DataValidationError(
                "the item text template has a positional field ('{}' or '{0}')", source=table.source,
                found=template, expected="named fields such as '{title}'",
            )
        if name not in names:
            names.append(name)
    return names


def _drop_duplicate_items(table: _Table, items: pd.DataFrame, id_column: str) -> pd.DataFrame:
    items = items.drop_duplicates(["item_id", "text"], keep="first")
    repeated = items["item_id"].duplicated(keep=False)
    if repeated.any():
        clash = items[repeated]
        item_id = clash["item_id"].iloc[0]
        first, second = clash[clash["item_id"] == item_id].head(2).itertuples()
        first_row, second_row = first.Index + 1, second.Index + 1
        raise table.error(
            f"item id {item_id!r} appears twice with different texts: {table.where(first_row)} gives "
            f"{first.text!r}, {table.where(second_row)} gives {second.text!r}",
            row=second_row, field=id_column, found=item_id, expected="each item id once (or identical repeats)",
        )
    return items.reset_index(drop=True)
