"""One call from a data config to the item catalogue and the leave-one-out splits.

``prepare_data`` is the only place where loading, filtering, cataloguing and splitting
are wired together, so that scripts, benchmarks and tests all get the same data from
the same config, and the report says what was dropped on the way.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field, fields

import pandas as pd
from datasets import DatasetDict

from ..modeling.item_catalog import ItemCatalog
from .builtin import BUILTIN_DATASETS, load_builtin
from .errors import DataValidationError
from .loading import (
    ITEM_COLUMN,
    SUPPORTED_FORMATS,
    TIMESTAMP_COLUMN,
    USER_COLUMN,
    InteractionColumns,
    ItemColumns,
    check_column_name,
    check_item_text_options,
    load_interactions,
    load_items,
)
from .splitting import k_core_filter, leave_one_out, user_ratings, user_sequences

logger = logging.getLogger(__name__)

_EXAMPLES = 5  # ids quoted in messages: enough to spot "12" vs "item_12", short enough to read
# timestamp_column's default: the TIMESTAMP_COLUMN when the file has one, else file order
# (with a notice). A name the user gives is required to exist; None is file order without a notice.
TIMESTAMP_AUTO = "auto"


@dataclass
class DataConfig:
    """Where the data comes from and how it is filtered: the data options of every script and of ``prepare_data``.

    Each field's ``metadata["help"]`` is its command-line help (``HfArgumentParser``). Every field is
    a plain value, checked here, so a bad option fails before anything is loaded.

    ``timestamp_column=None`` means the file order is each user's time order; the default ``"auto"``
    reads the ``timestamp`` column when the file has one and the file order (with a warning) when it
    has none; ``report["timestamp_column"]`` says which was used. ``min_rating=None`` keeps every
    interaction: the headline protocol treats MovieLens ratings as implicit interactions. The column
    options are ignored for built-in datasets, which bring their own item metadata and refuse ``items``.
    """

    _argument_group_name = "data"  # HfArgumentParser's heading for these options

    dataset: str = field(
        default="movielens-100k",
        metadata={"help": "built-in dataset name or path to an interactions file (csv, tsv, parquet, jsonl)"},
    )
    items: str | None = field(default=None, metadata={"help": "item metadata file (id + text fields)"})
    user_column: str = field(default=USER_COLUMN, metadata={"help": "interactions column holding the user id"})
    item_column: str = field(default=ITEM_COLUMN, metadata={"help": "interactions column holding the item id"})
    timestamp_column: str | None = field(
        default=TIMESTAMP_AUTO,
        metadata={
            "help": 'interactions column holding the time; none = file order; auto = "timestamp" if the file has one, '
            "else file order (with a notice)"
        },
    )
    rating_column: str | None = field(default=None, metadata={"help": "interactions column holding a rating (optional)"})
    min_rating: float | None = field(
        default=None, metadata={"help": "keep interactions rated at least this (default: all, implicit feedback)"}
    )
    item_id_column: str = field(default=ITEM_COLUMN, metadata={"help": "item metadata column holding the item id"})
    item_text_fields: list[str] | None = field(
        default=None, metadata={"help": "item metadata columns rendered into the item text"}
    )
    item_text_template: str | None = field(
        default=None, metadata={"help": 'str.format template for the item text, e.g. "{title} | {genres}"'}
    )
    k_core: int = field(
        default=0, metadata={"help": "drop users and items with fewer interactions than this (0 = off)"}
    )
    file_format: str | None = field(
        default=None, metadata={"help": "csv, tsv, parquet or jsonl when the file extension does not say"}
    )
    delimiter: str | None = field(default=None, metadata={"help": 'field separator of csv/tsv files, e.g. ";"'})

    def __post_init__(self) -> None:
        self.dataset = _path_or_name("dataset", self.dataset)
        self.items = None if self.items is None else _path_or_name("items", self.items)
        for name in ("user_column", "item_column", "item_id_column"):
            check_column_name(name, getattr(self, name))
        for name in ("timestamp_column", "rating_column"):
            check_column_name(name, getattr(self, name), optional=True)
        self._check_min_rating()
        self.item_text_fields = check_item_text_options(
            self.item_text_fields, self.item_text_template, fields_name="item_text_fields", template_name="item_text_template"
        )
        if isinstance(self.k_core, bool) or not isinstance(self.k_core, int) or self.k_core < 0:
            raise TypeError(f"k_core must be an int >= 0 (0 or 1 disables it); got {self.k_core!r}")
        if self.file_format is not None and self.file_format not in SUPPORTED_FORMATS:
            raise ValueError(f"file_format must be None or one of {SUPPORTED_FORMATS}; got {self.file_format!r}")
        if self.delimiter is not None and (not isinstance(self.delimiter, str) or len(self.delimiter) != 1):
            raise ValueError(f"delimiter must be None or one character such as ',' or '\\t'; got {self.delimiter!r}")
        if self.is_builtin and self.items is not None:
            raise ValueError(
                f"items is set but {self.dataset!r} is a built-in dataset with its own item metadata; "
                "leave items=None, or pass the interactions as a file path"
            )

    @property
    def is_builtin(self) -> bool:
        return self.dataset in BUILTIN_DATASETS

    def data_config(self) -> "DataConfig":
        """The data options alone, as a plain ``DataConfig`` (a run's config holds them among its others)."""
        return DataConfig(**{spec.name: getattr(self, spec.name) for spec in fields(DataConfig)})

    def record_data_report(self, report: dict) -> None:
        """Replace ``timestamp_column: auto`` by what the data gave (a column or None).

        A run calls this before it writes training_config.yaml, so the saved config says how the data
        was read, and a later evaluation reads it the same way without repeating the file-order notice.
        """
        if self.timestamp_column == TIMESTAMP_AUTO and "timestamp_column" in report:
            self.timestamp_column = report["timestamp_column"]

    def _check_min_rating(self) -> None:
        if self.min_rating is None:
            return
        if isinstance(self.min_rating, bool) or not isinstance(self.min_rating, (int, float)):
            raise TypeError(f"min_rating must be a number or None; got {self.min_rating!r}")
        if not math.isfinite(self.min_rating):
            raise ValueError(f"min_rating must be finite; got {self.min_rating!r}")
        if self.rating_column is None and not self.is_builtin:
            raise ValueError("min_rating needs rating_column: name the column that holds the ratings")


def _path_or_name(name: str, value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str or path; got {value!r}")
    return value


@dataclass
class PreparedData:
    """Everything a model needs from the data: the catalogue, the splits and what happened.

    ``splits`` hold catalogue *indices* (row numbers of the item table), not external
    ids; ``catalog`` maps them back. ``cold_items`` are the indices held out of training
    by the cold-start protocol (:func:`hf_seqrec.data.cold_start_split.apply_cold_start`), empty
    without it.
    """

    catalog: ItemCatalog
    splits: DatasetDict
    report: dict
    cold_items: list[int] = field(default_factory=list)


def prepare_data(config: DataConfig) -> PreparedData:
    """Load, filter, catalogue and split the data described by ``config``.

    Steps: load (built-in or files) -> keep ``rating >= min_rating`` -> k-core filter ->
    catalogue of every remaining item in natural id order (numeric ids numerically,
    so runs are deterministic) -> per-user chronological sequences -> leave-one-out.
    When the interactions have ratings, the splits carry them too (``ratings`` of the
    training items, ``target_rating`` of each evaluation target).
    """
    interactions, items, sources, (n_loaded, n_after_rating) = _filtered_interactions(config)
    catalog, catalog_report = _build_catalog(interactions["item_id"], items, *sources)
    index_of = {item_id: row for row, item_id in enumerate(catalog.item_ids)}
    sequences = {
        user: [index_of[item] for item in items_of_user] for user, items_of_user in user_sequences(interactions).items()
    }
    ratings = user_ratings(interactions) if "rating" in interactions.columns else None
    try:
        splits, split_report = leave_one_out(sequences, ratings)
    except DataValidationError as error:
        hint = "Lower k_core or min_rating, or add interactions" if config.k_core > 1 or config.min_rating is not None else None
        raise _naming_source(error, sources[0], hint=hint) from None
    report = {
        "n_interactions": len(interactions),
        "n_interactions_dropped_by_rating": n_loaded - n_after_rating,
        "n_interactions_dropped_by_k_core": n_after_rating - len(interactions),
        "n_users": split_report["n_users"],
        "n_items": len(catalog),
        "n_users_evaluated": split_report["n_users_evaluated"],
        "n_users_too_short": split_report["n_users_too_short"],
        "k_core": config.k_core,
        "timestamp_column": _timestamp_column_used(config, interactions),
        **catalog_report,
    }
    return PreparedData(catalog=catalog, splits=splits, report=report)


def _naming_source(error: DataValidationError, source: str, *, hint: str | None = None) -> DataValidationError:
    """The same error, saying which interactions file it is about (the filters only see a table)."""
    if not os.path.exists(source):
        source = f"<{source}>"  # a built-in dataset, not a file (DataValidationError prints "file ..." otherwise)
    return DataValidationError(
        error.problem, source=error.source or source, row=error.row, line=error.line, field=error.field,
        found=error.found, expected=error.expected, hint=error.hint or hint,
    )


def _filtered_interactions(
    config: DataConfig, *, with_items: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame | None, tuple[str, str | None], tuple[int, int]]:
    """The interactions after the ``min_rating`` and ``k_core`` filters, as training and recommending both read them.

    Returns ``(interactions, items or None, sources, (rows loaded, rows after the rating filter))``;
    ``with_items=False`` leaves an item metadata file unread.
    """
    interactions, items, sources = _load(config, with_items=with_items)
    n_loaded = len(interactions)
    interactions = _filter_by_rating(interactions, config.min_rating, sources[0])
    n_after_rating = len(interactions)
    try:
        interactions = k_core_filter(interactions, config.k_core)
    except DataValidationError as error:
        raise _naming_source(error, sources[0]) from None
    return interactions, items, sources, (n_loaded, n_after_rating)


def _load(config: DataConfig, *, with_items: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None, tuple[str, str | None]]:
    """(interactions, items or None, (interactions source name, items source name))."""
    if config.is_builtin:
        interactions, items = load_builtin(config.dataset)
        return interactions, items, (f"built-in {config.dataset} interactions", f"built-in {config.dataset} items")
    if not os.path.exists(config.dataset):
        raise DataValidationError(
            "no such file", source=config.dataset,
            expected=f"a built-in dataset name ({', '.join(BUILTIN_DATASETS)}) or the path of an interactions file",
        )
    auto_timestamp = config.timestamp_column == TIMESTAMP_AUTO
    columns = InteractionColumns(
        user=config.user_column, item=config.item_column,
        timestamp=TIMESTAMP_COLUMN if auto_timestamp else config.timestamp_column, rating=config.rating_column,
        timestamp_optional=auto_timestamp,
    )
    interactions = load_interactions(
        config.dataset, columns, file_format=config.file_format, delimiter=config.delimiter
    )
    if auto_timestamp and TIMESTAMP_COLUMN not in interactions.columns:
        _warn_file_order(config.dataset)
    items = None
    if config.items is not None and with_items:
        item_columns = ItemColumns(
            id=config.item_id_column, text_fields=config.item_text_fields, template=config.item_text_template
        )
        items = load_items(config.items, item_columns, file_format=config.file_format, delimiter=config.delimiter)
    return interactions, items, (config.dataset, config.items)


def _timestamp_column_used(config: DataConfig, interactions: pd.DataFrame) -> str | None:
    """The column each user's interactions were ordered by (``"auto"`` resolved); None: the file order."""
    if TIMESTAMP_COLUMN not in interactions.columns:
        return None
    if config.is_builtin or config.timestamp_column == TIMESTAMP_AUTO:
        return TIMESTAMP_COLUMN
    return config.timestamp_column


def _warn_file_order(source: str) -> None:
    """Say that a file without a timestamp column is read in file order: a silent guess about time is a trap."""
    warnings.warn(
        f"{source} has no '{TIMESTAMP_COLUMN}' column: each user's interactions are taken in file order. "
        "Pass --timestamp_column none (timestamp_column=None) to silence this notice, "
        "or --timestamp_column NAME to order them by another column",
        UserWarning,
        stacklevel=4,
    )


def _filter_by_rating(interactions: pd.DataFrame, min_rating: float | None, source: str) -> pd.DataFrame:
    if min_rating is None:
        return interactions
    if "rating" not in interactions.columns:
        raise DataValidationError(
            "min_rating is set but no ratings were loaded", source=source, field="rating",
            expected="a rating column (set rating_column)",
        )
    kept = interactions[interactions["rating"] >= min_rating]
    if kept.empty:
        ratings = interactions["rating"]
        raise DataValidationError(
            f"no interaction has rating >= {min_rating}", source=source, field="rating",
            found=f"ratings from {ratings.min()} to {ratings.max()}", expected=f"some ratings >= {min_rating}",
            hint="Lower min_rating or set it to None to keep every interaction",
        )
    return kept


def _natural_order(item_ids: list[str]) -> list[str]:
    """Numeric ids in numeric order ("2" before "10"), anything else lexicographically."""
    if all(re.fullmatch(r"[0-9]+", item_id) for item_id in item_ids):
        return sorted(item_ids, key=lambda item_id: (int(item_id), item_id))  # "7" and "007" stay distinct
    return sorted(item_ids)


def _build_catalog(
    item_ids: pd.Series, items: pd.DataFrame | None, interactions_source: str, items_source: str | None
) -> tuple[ItemCatalog, dict[str, int]]:
    """The catalogue of every item that occurs in the interactions, with texts from the metadata."""
    ordered = _natural_order(item_ids.unique().tolist())
    texts = {} if items is None else dict(zip(items["item_id"], items["text"]))
    if items is not None and not any(item_id in texts for item_id in ordered):
        raise DataValidationError(
            f"none of the {len(texts)} item ids in the metadata occurs in the interactions of {interactions_source}",
            source=items_source, field="item_id",
            found=f"metadata ids like {list(texts)[:_EXAMPLES]}",
            expected=f"ids that also occur in the interactions, like {ordered[:_EXAMPLES]}",
            hint="Both files must use the same ids (12, 12.0 and ' 12' are the same id; 'item_12' and '12' are not)",
        )
    without = [item_id for item_id in ordered if not texts.get(item_id)]
    if items is not None and without:
        warnings.warn(
            f"{len(without)} of {len(ordered)} items in {interactions_source} have no text in {items_source} "
            f"(e.g. {without[:_EXAMPLES]}); they get the text 'item <id>'",
            UserWarning,
            stacklevel=3,
        )
    elif items is None:
        logger.info("no item metadata given; every item's text is 'item <id>'")
    catalog = ItemCatalog(ordered, [texts.get(item_id) or f"item {item_id}" for item_id in ordered])
    in_catalog = set(ordered)
    report = {
        "n_metadata_items_unused": sum(item_id not in in_catalog for item_id in texts),
        "n_items_without_metadata": len(without),
    }
    return catalog, report


def load_user_histories(config: DataConfig) -> tuple[dict[str, list[str]], dict]:
    """Each user's whole history (external item ids, oldest first), read exactly as ``prepare_data`` reads it.

    The same loading, validation, ``min_rating`` and ``k_core`` filters and time order as training,
    but no catalogue and no split: recommending for a user reads everything the user did, targets
    included. Users come in order of first appearance in the data. Returns ``(histories, report)``.
    """
    interactions, _, _, (n_loaded, _) = _filtered_interactions(config, with_items=False)
    histories = user_sequences(interactions)
    report = {
        "n_interactions": len(interactions),
        "n_interactions_dropped": n_loaded - len(interactions),
        "n_users": len(histories),
        "timestamp_column": _timestamp_column_used(config, interactions),
    }
    return histories, report
