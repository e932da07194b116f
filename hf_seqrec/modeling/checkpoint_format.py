"""The checkpoint format: every file a hf_seqrec checkpoint holds, and how the non-weight ones are read and written.

One home for what the model, the training loop, the data package and the next-item pipeline must
agree on: the file names, the item catalogue (`item_catalog.jsonl`: item ids, texts and the rules that
normalise them for lookups), the popularity counts (`item_popularity.json`) and atomic writes.
`SeqRecForNextItem.from_pretrained` loads the catalogue and the counts into the model
(`model.item_catalog`, `model.item_popularity`); the pipeline takes them from there and reads no file.

This file travels with every checkpoint (a same-folder import of `modeling_seqrec.py`, which
transformers copies for trust_remote_code), so it imports only the standard library (safetensors and
huggingface_hub inside the functions that need them): nothing of hf_seqrec, which a process loading a
checkpoint's own code may not have.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import torch

# ----------------------------------------------------------------------------- file names
ITEM_TABLE_FILE = "item_table.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
# Not peft's "adapter_config.json": with that file at the root, transformers' AutoModel and pipeline()
# take a Hub repo for a bare peft adapter and load `base_model_name_or_path` (the backbone) instead.
ADAPTER_CONFIG_FILE = "seqrec_adapter_config.json"
BACKBONE_FILE = "backbone.safetensors"
CATALOG_FILE = "item_catalog.jsonl"
POPULARITY_FILE = "item_popularity.json"
# Written by earlier versions (every item's text encoding); no longer read or written, but still
# hf_seqrec's own file when a run's output directory is cleared.
TEXT_ENCODINGS_FILE = "item_text_encodings.safetensors"
# input_mode="id+text": every item's text token ids (text_inputs.py).
ITEM_TEXT_TOKENS_FILE = "item_text_tokens.safetensors"
# A model trained with the reward-aware objective: its Q-learning head (q_learning.py).
Q_HEAD_FILE = "q_head.safetensors"
# The next-item pipeline (hf_seqrec/pipelines/next_item.py), copied next to the model code in every checkpoint.
PIPELINE_FILE = "next_item.py"
# Same-folder modules next_item.py imports (explanations, inference precision, history padding), copied with it.
PIPELINE_MODULE_FILES = ("explain.py", "precision.py", "padding.py")
PIPELINE_TASK = "next-item"
# Every file save_pretrained (and the training loop) may write besides config.json and the model code.
CHECKPOINT_FILES = (
    ITEM_TABLE_FILE, ADAPTER_FILE, ADAPTER_CONFIG_FILE, BACKBONE_FILE, CATALOG_FILE, POPULARITY_FILE,
    TEXT_ENCODINGS_FILE, ITEM_TEXT_TOKENS_FILE, Q_HEAD_FILE, PIPELINE_FILE, *PIPELINE_MODULE_FILES,
)
# Label of a position without a next item (the collator pads labels with it; the loss skips it).
IGNORE_INDEX = -100


# ----------------------------------------------------------------------------- atomic writes
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same directory so the final ``os.replace`` is a
    rename within one filesystem, which POSIX guarantees to be atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); the renamed file should read like one written with open():
    # the old file's mode, or the usual 0666 minus the umask for a new one.
    tmp.chmod(path.stat().st_mode & 0o7777 if path.is_file() else _new_file_mode())
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_file_mode() -> int:
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically: a reader never sees half a file."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


# ----------------------------------------------------------------------------- normalisation
_INTEGRAL_FLOAT_TEXT = re.compile(r"^([+-]?\d+)\.0*$")


def normalize_text(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form of an item text, for lenient lookups."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def normalize_item_id(value: object) -> str:
    """An item id as the catalogue stores it: 12, 12.0, "12" and " 12 " are all "12"."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"item ids are strings or integers; got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"item ids are strings or integers; got {value!r}")
        return str(int(value)) if value.is_integer() else str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy / torch scalars
        return normalize_item_id(value.item())
    text = str(value).strip()
    return _INTEGRAL_FLOAT_TEXT.sub(r"\1", text)


def describe_problem(
    problem: str,
    *,
    source: str | None = None,
    row: int | None = None,
    field: str | None = None,
    found: object = None,
    expected: str | None = None,
) -> str:
    """"file X, row 3, field 'item_id': problem; found ...; expected ...": where, what was found, what was expected."""
    where = []
    if source is not None:
        where.append(source if source.startswith("<") else f"file {source}")
    if row is not None:
        where.append(f"row {row}")
    if field is not None:
        where.append(f"field '{field}'")
    message = f"{', '.join(where)}: {problem}" if where else problem
    if found is not None:
        message += f"; found {found!r}"
    if expected is not None:
        message += f"; expected {expected}"
    return message


# ----------------------------------------------------------------------------- the item catalogue
@dataclass
class ItemCatalog:
    """External item ids, their rendered texts and the row of each in the item table.

    Item ids are kept as strings so that ``12`` in one file and ``"12"`` in another
    refer to the same item. Row ``i`` of the model's item table belongs to
    ``item_ids[i]``; the catalogue is saved with every checkpoint so that
    recommendations can be mapped back to the user's own ids.

    The normalisation rules (:meth:`normalize_text`, :meth:`normalize_item_id`) come with the
    catalogue, so code that receives one (the next-item pipeline) matches ids and titles by the
    checkpoint's own rules without importing anything.
    """

    item_ids: list[str]
    texts: list[str]
    _index: dict[str, int] = field(init=False, repr=False)

    normalize_text = staticmethod(normalize_text)
    normalize_item_id = staticmethod(normalize_item_id)

    def __post_init__(self) -> None:
        self.item_ids = [str(item_id) for item_id in self.item_ids]
        self.texts = [str(text) for text in self.texts]
        if len(self.item_ids) != len(self.texts):
            raise ValueError(
                f"ItemCatalog needs one text per item id; got {len(self.item_ids)} ids and {len(self.texts)} texts"
            )
        self._index = {}
        for row, item_id in enumerate(self.item_ids):
            if item_id in self._index:
                raise self._invalid(
                    "duplicate item id in the catalogue", row=row, field="item_id", found=item_id,
                    expected="each item id exactly once",
                )
            self._index[item_id] = row

    @staticmethod
    def _invalid(problem: str, **where: Any) -> Exception:
        """The error for a catalogue that cannot be used (hf_seqrec's data package raises its DataValidationError)."""
        return ValueError(describe_problem(problem, **where))

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._index

    def index(self, item_id: object) -> int:
        """Row of ``item_id`` in the item table; ``KeyError`` naming the id if unknown."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise KeyError(f"item id {item_id!r} is not in the catalogue of {len(self)} items") from None

    def item_id(self, index: int) -> str:
        return self.item_ids[index]

    def text(self, index: int) -> str:
        return self.texts[index]

    def with_items(self, rows: Sequence[tuple[str, str]]) -> "ItemCatalog":
        """A catalogue of the same class with ``(item_id, text)`` rows appended (rows of new items of the item table)."""
        return type(self)(list(self.item_ids) + [i for i, _ in rows], list(self.texts) + [t for _, t in rows])

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the catalogue as JSON lines (one ``{"item_id", "text"}`` per row, in row order)."""
        path = Path(directory) / CATALOG_FILE
        lines = (json.dumps({"item_id": i, "text": t}, ensure_ascii=False) for i, t in zip(self.item_ids, self.texts))
        write_text_atomic(path, "\n".join(lines) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ItemCatalog":
        path = Path(directory) / CATALOG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no item catalogue; a hf_seqrec checkpoint holds {CATALOG_FILE}")
        item_ids, texts = [], []
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    item_ids.append(row["item_id"])
                    texts.append(row["text"])
                except (json.JSONDecodeError, KeyError) as error:
                    raise cls._invalid(
                        f"unreadable catalogue line ({error})", source=str(path), row=line_number,
                        expected='a JSON object with "item_id" and "text"',
                    ) from None
        return cls(item_ids, texts)


def item_rows(items: Any) -> list[tuple[str, str]]:
    """`(item_id, text)` pairs from a list of dicts, a pandas DataFrame or a `datasets.Dataset`."""
    if hasattr(items, "to_dict") and hasattr(items, "columns"):  # pandas
        items = items.to_dict("records")
    elif hasattr(items, "column_names") and hasattr(items, "to_list"):  # datasets.Dataset
        items = items.to_list()
    if isinstance(items, dict) or isinstance(items, (str, bytes)):
        raise TypeError("add_items expects a list of {'item_id', 'text'} rows (or a DataFrame / Dataset with those columns)")
    rows = []
    for number, row in enumerate(items):
        if not isinstance(row, dict) or "item_id" not in row or "text" not in row:
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"add_items: row {number}: expected an 'item_id' and a 'text' field, found {found}")
        if not isinstance(row["text"], str):
            raise ValueError(f"add_items: row {number}: expected a string text, found {row!r}")
        try:
            # The catalogue's own rule: 12.0 from a pandas column, "12" and " 12 " are all "12".
            item_id = normalize_item_id(row["item_id"])
        except TypeError:
            raise ValueError(f"add_items: row {number}: expected a string or integer item_id, found {row!r}") from None
        rows.append((item_id, row["text"]))
    return rows


def new_item_rows(items: Any, catalog: ItemCatalog) -> list[tuple[str, str]]:
    """The rows of :func:`item_rows`, checked to be items ``catalog`` does not hold yet, each with a text."""
    rows = item_rows(items)
    known = set(catalog.item_ids)
    seen: set[str] = set()
    for number, (item_id, text) in enumerate(rows):
        if item_id in known or item_id in seen:
            raise ValueError(f"add_items: row {number}: item_id {item_id!r} is already in the catalogue; expected new ids only")
        if not text.strip():
            raise ValueError(f"add_items: row {number} (item_id {item_id!r}): empty text; a new item is known by its text alone")
        seen.add(item_id)
    return rows


# ----------------------------------------------------------------------------- popularity counts
def item_popularity(sequences: Iterable[Sequence[int]], num_items: int) -> list[int]:
    """How often each item-table row occurs in ``sequences`` (lists of row indices)."""
    counts = [0] * num_items
    for sequence in sequences:
        for row in sequence:
            counts[int(row)] += 1
    return counts


def write_item_popularity(directory: str | os.PathLike, counts: Sequence[int], *, source: str) -> Path:
    """Write ``item_popularity.json``: ``{"source": where the counts come from, "counts": one per item-table row}``."""
    path = Path(directory) / POPULARITY_FILE
    write_text_atomic(path, json.dumps({"source": source, "counts": list(counts)}) + "\n")
    return path


def read_item_popularity(directory: str | os.PathLike) -> list[int] | None:
    """The counts of ``item_popularity.json`` in ``directory``; None when the checkpoint has none."""
    path = Path(directory) / POPULARITY_FILE
    if not path.is_file():
        return None
    return list(json.loads(path.read_text(encoding="utf-8"))["counts"])


def save_item_popularity(
    directory: str | os.PathLike, sequences: Iterable[Sequence[int]], num_items: int, *, source: str = "training sequences"
) -> Path:
    """Write ``item_popularity.json``: the count of every item in ``sequences``, in item-table order.

    The pipeline ranks by these counts under ``fallback="popular"`` (cold-start users). Count the
    training split only, so the fallback never sees the evaluation targets.
    """
    return write_item_popularity(directory, item_popularity(sequences, num_items), source=source)


# ----------------------------------------------------------------------------- locating a checkpoint
def local_checkpoint_dir(name_or_path: str | os.PathLike, **kwargs: Any) -> Path:
    """A local directory for a checkpoint given as a path or a Hub repo id (downloaded with huggingface_hub).

    `revision`, `token`, `cache_dir` and `local_files_only` in ``kwargs`` are passed to the download.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a hf_seqrec checkpoint (no config.json)")
        return path
    # Imported here: only a Hub id needs it (it comes with transformers wherever a checkpoint is loaded).
    from huggingface_hub import snapshot_download

    hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
    return Path(snapshot_download(str(name_or_path), **hub_kwargs))


def checkpoint_revision(directory: str | os.PathLike) -> tuple[str, str]:
    """``(revision, source)`` of the checkpoint in a local ``directory``, to tell two checkpoints apart.

    A Hub snapshot folder (``.../snapshots/<commit>``, what :func:`local_checkpoint_dir` returns for a
    Hub id) is ``("<commit>", "hub-commit")``; any other directory is ``("<sha256>", "sha256-of-files")``,
    the first 16 hex digits of a SHA-256 over the names and bytes of every file that changes what the
    model recommends: ``config.json``, the catalogue, the popularity counts (``fallback="popular"``),
    the adapter config and every ``*.safetensors`` (weights, item table, item text tokens), not the
    model card. Two directories get the same revision exactly when they hold the same such files.
    """
    import hashlib

    directory = Path(directory)
    if directory.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", directory.name):
        return directory.name, "hub-commit"
    names = sorted({*(p.name for p in directory.glob("*.safetensors")), "config.json", CATALOG_FILE, POPULARITY_FILE, ADAPTER_CONFIG_FILE})
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16], "sha256-of-files"
