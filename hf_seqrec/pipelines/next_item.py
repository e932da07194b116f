"""`pipeline("next-item")`: the top-k next items for a user's history, from a hf_seqrec checkpoint.

    >>> import hf_seqrec                                   # registers the "next-item" task
    >>> from transformers import pipeline
    >>> recommend = pipeline("next-item", model="path/to/checkpoint")        # or a Hub id
    >>> recommend({"history": ["50", "172", "133"]}, top_k=3)
    [{'item_id': ..., 'text': ..., 'score': ..., 'rank': 1}, {... 'rank': 2}, {... 'rank': 3}]

Accepted inputs (anything else is rejected with a message that says what to pass):

- one history, as a dict: ``{"history": [item ids, oldest first]}`` or ``{"history_text": [titles]}``,
  optionally with ``"timestamps": [one per item]`` (the items are then put in time order first);
- a batch, as a list of such dicts: the result is one list of recommendations per dict.

A bare list of ids (``pipe(["50", "172"])``) is refused: transformers treats a list as a batch, so it
would silently become two one-item histories.

Call parameters: ``top_k`` (10), ``exclude_seen`` (True: items of the history are never recommended),
``candidates`` (item ids; rank only these), ``return_scores`` (True), ``fallback`` (None or
``"popular"``: a history that is empty, or has no known item, gets the most popular items of the
training data instead of an error), ``batch_size`` (64 histories per forward pass).

Each result is a list, in rank order, of ``{"item_id", "text", "score", "rank"}``: ``score`` is the
model's logit for the item (the item's training count under the popularity fallback), ``rank`` starts
at 1.

Explanations: with ``explain=True`` every recommended item also carries ``"explanation"``, a list of
``{"item_id", "text", "contribution", "position"}`` over the history the model read, largest
contribution to the item's score first (empty under the popularity fallback). ``explain_method`` is
``"occlusion"`` (default: score with the history minus score without that one item, every removal
in one batched forward pass) or ``"integrated_gradients"`` (needs captum); ``explain_baseline``
(``"mean"`` item vector, default, or ``"zeros"``) and ``explain_steps`` (integrated gradients' path
steps, 32) tune them. See ``explain.py`` for what each method means and costs.

Precision, chosen once when the pipeline is built: ``pipeline("next-item", model=..., precision="int8")``
(or ``"bf16"``, ``"fp32"``; default: the model as loaded). ``"int8"`` merges the LoRA adapter into the
backbone and quantizes its linear layers to int8 (dynamic quantization, CPU); ``"bf16"`` merges and
casts the backbone to bfloat16. The item table and the scores stay fp32, and checkpoints are always
fp32: precision is applied at load time (see ``precision.py``).

New items (released after training) are added with ``recommend.add_items([{"item_id": ..., "text": ...}])``
and are recommendable at once; a checkpoint trained with ``item_text_tower`` scores them from their text.

This file is also the checkpoint's own copy of the pipeline: ``save_pretrained`` copies it next to
``modeling_seqrec.py`` so that ``pipeline(model=checkpoint, trust_remote_code=True)`` works where
hf_seqrec is not installed. It therefore imports nothing from hf_seqrec, only torch, transformers
and the standard library (and its same-folder ``precision.py`` and ``explain.py``, copied with it).
It reads no file either: the model brings its item catalogue (``model.item_catalog``, with the rules
that normalise ids and titles) and its popularity counts (``model.item_popularity``), both loaded
by ``from_pretrained`` (see the model's ``checkpoint_format.py``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from transformers import Pipeline

from .explain import DEFAULT_BASELINE, DEFAULT_IG_STEPS, DEFAULT_METHOD, explain_parameters, explanation_records, pad_histories
from .explain import explain as explain_items
from .precision import check_precision, prepare_for_inference

DEFAULT_TOP_K = 10
DEFAULT_BATCH_SIZE = 64
FALLBACKS = (None, "popular")
INPUT_KEYS = ("history", "history_text", "timestamps")
# "Toy Story (1995) | Animation, Children's, Comedy": what comes before " | " is the title.
TITLE_SEPARATOR = " | "
_TRAILING_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_USAGE = (
    'pass one history as {"history": [item ids, oldest first]} or {"history_text": [titles]}, '
    "or a batch as a list of such dicts"
)


class UnknownItemWarning(UserWarning):
    """Some items of a history (or of ``candidates``) are not in the catalogue and were skipped."""


class AmbiguousItemWarning(UserWarning):
    """A title of ``history_text`` matches several catalogue items and was skipped."""


# ----------------------------------------------------------------------------- catalogue lookups
class CatalogIndex:
    """The lookups the pipeline needs: external id -> row, title/text -> rows, row -> id and text.

    Text matching goes from strict to lenient and stops at the first level with any match:
    the exact text, the exact title (the part before " | "), the normalised text or title
    (case, accents and punctuation ignored), and the normalised title without its "(1995)" year.
    A level with several matching items makes the title ambiguous; it is not resolved by guessing.
    Ids and texts are normalised by the catalogue's own rules (``normalize_item_id``, ``normalize_text``).
    """

    def __init__(self, catalog: Any) -> None:
        item_ids, texts = catalog.item_ids, catalog.texts
        if len(item_ids) != len(texts):
            raise ValueError(f"catalogue has {len(item_ids)} ids but {len(texts)} texts")
        self.item_ids = [str(i) for i in item_ids]
        self.texts = [str(t) for t in texts]
        self.row_of = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self._normalize_id = catalog.normalize_item_id
        normalize_text = catalog.normalize_text
        titles = [text.split(TITLE_SEPARATOR, 1)[0].strip() for text in self.texts]
        self._levels = [
            _group(self.texts),
            _group(titles),
            _group([normalize_text(t) for t in self.texts] + [normalize_text(t) for t in titles], modulo=len(titles)),
            _group([normalize_text(_TRAILING_YEAR.sub("", t)) for t in titles]),
        ]
        self._level_keys = [str.strip, str.strip, normalize_text, lambda t: normalize_text(_TRAILING_YEAR.sub("", t))]

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows_for_ids(self, values: Iterable[object]) -> tuple[list[int], list[object]]:
        """Rows of the known ids (in order) and the unknown values."""
        rows, unknown = [], []
        for value in values:
            row = self.row_of.get(self._normalize_id(value))
            if row is None:
                unknown.append(value)
            else:
                rows.append(row)
        return rows, unknown

    def match_text(self, text: str) -> list[int]:
        """Rows matching ``text`` at the strictest level that matches anything (empty: unknown)."""
        for key, level in zip(self._level_keys, self._levels):
            rows = level.get(key(text))
            if rows:
                return rows
        return []


def _group(keys: Sequence[str], modulo: int | None = None) -> dict[str, list[int]]:
    """key -> sorted distinct rows having it (``modulo`` folds a concatenation of two key lists)."""
    groups: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        if not key:
            continue
        row = position % modulo if modulo else position
        rows = groups.setdefault(key, [])
        if row not in rows:
            rows.append(row)
    return groups


def _catalog_of(model: Any) -> CatalogIndex:
    catalog = getattr(model, "item_catalog", None)
    if catalog is None:
        raise ValueError(
            "the next-item pipeline needs the model's item catalogue to map item ids to rows: load a checkpoint that has "
            "item_catalog.jsonl, or set `model.item_catalog` (an hf_seqrec ItemCatalog) before building the pipeline"
        )
    return CatalogIndex(catalog)


def _popularity_of(model: Any, num_items: int) -> torch.Tensor:
    counts = getattr(model, "item_popularity", None)
    if counts is None:
        raise ValueError(
            'fallback="popular" needs item popularity counts, and this checkpoint has no item_popularity.json; '
            "write it with hf_seqrec.pipelines.save_item_popularity(checkpoint_dir, training_sequences, num_items) "
            "and load the checkpoint again, or set `model.item_popularity` to one count per item"
        )
    counts = torch.as_tensor(counts, dtype=torch.float32).flatten()
    if counts.numel() != num_items:
        raise ValueError(f"item popularity has {counts.numel()} counts for a catalogue of {num_items} items")
    return counts


# ----------------------------------------------------------------------------- the pipeline
class NextItemPipeline(Pipeline):
    """Recommend the next items for user histories with a `SeqRecForNextItem` checkpoint.

    See the module docstring for the accepted inputs, the parameters and the output format.
    """

    # Items are not text: there is nothing for a tokenizer or processor to do, so none is loaded.
    _load_tokenizer = False
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model: Any, *args: Any, precision: str | None = None, **kwargs: Any) -> None:
        # `precision` ("fp32", "bf16", "int8"; None: as loaded) converts the model once, here, not per call.
        if precision is not None:
            check_precision(precision)  # a typo fails before any work
        # Parameter checks need the catalogue, and the base class checks the parameters given here.
        self.catalog = _catalog_of(model)
        if len(self.catalog) != model.config.num_items:
            raise ValueError(
                f"the item catalogue has {len(self.catalog)} items but the model scores {model.config.num_items}"
            )
        self.max_len = int(model.config.max_len)
        self._popularity: torch.Tensor | None = None
        super().__init__(model, *args, **kwargs)
        self.model.eval()
        if precision is not None:
            prepare_for_inference(self.model, precision)

    def add_items(self, items: Any, tokenizer: Any = None) -> list[str]:
        """Make new items recommendable now, from their text alone (see `SeqRecForNextItem.add_items`).

        `items`: `{"item_id", "text"}` rows (a list of dicts, a DataFrame or a `datasets.Dataset`).
        Returns the new item ids. A model with a text tower scores them through its trained
        projection of their text; they count 0 for `fallback="popular"`.
        """
        rows = self.model.add_items(items, tokenizer=tokenizer)
        self.catalog = _catalog_of(self.model)
        self._popularity = None  # recomputed from the model's extended counts when next needed
        return [self.catalog.item_ids[row] for row in rows]

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        top_k: int | None = None,
        exclude_seen: bool | None = None,
        candidates: Sequence[object] | None = None,
        return_scores: bool | None = None,
        fallback: str | None = None,
        explain: bool | None = None,
        explain_method: str | None = None,
        explain_baseline: str | None = None,
        explain_steps: int | None = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if "precision" in unknown:
            raise TypeError(
                "precision is chosen once, when the pipeline is built: "
                f"pipeline(\"next-item\", model=..., precision={unknown['precision']!r}), not per call"
            )
        if unknown:
            raise TypeError(
                f"unknown next-item pipeline parameter(s) {sorted(unknown)}; the parameters are top_k, exclude_seen, "
                "candidates, return_scores, fallback, explain, explain_method, explain_baseline, explain_steps and batch_size"
            )
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer; got {top_k!r}")
            postprocess["top_k"] = top_k
        if exclude_seen is not None:
            postprocess["exclude_seen"] = _check_bool("exclude_seen", exclude_seen)
        if return_scores is not None:
            postprocess["return_scores"] = _check_bool("return_scores", return_scores)
        if candidates is not None:
            postprocess["candidates"] = self._candidate_rows(candidates)
        if fallback is not None:
            if fallback not in FALLBACKS:
                raise ValueError(f"fallback must be None or 'popular'; got {fallback!r}")
            preprocess["fallback"] = fallback
        postprocess.update(explain_parameters(explain, explain_method, explain_baseline, explain_steps))
        return preprocess, {}, postprocess

    def _candidate_rows(self, candidates: Sequence[object]) -> torch.Tensor:
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Iterable):
            raise TypeError(f"candidates must be a list of item ids; got {candidates!r}")
        rows, unknown = self.catalog.rows_for_ids(list(candidates))
        if unknown:
            warnings.warn(f"candidates not in the catalogue, skipped: {_quote(unknown)}", UnknownItemWarning, stacklevel=5)
        if not rows:
            raise ValueError(f"none of the {len(unknown)} candidates is in the catalogue of {len(self.catalog)} items")
        return torch.tensor(sorted(set(rows)), dtype=torch.long)

    # ------------------------------------------------------------------ calling
    def __call__(self, inputs: Any, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        """Recommend for one history (a dict) or a batch (a list of dicts); see the module docstring."""
        if args:
            raise TypeError(f"the next-item pipeline takes its parameters by keyword; got extra positional {args!r}")
        if isinstance(inputs, dict):
            return next(self._iterate([inputs], 1, kwargs))
        if isinstance(inputs, (list, tuple)):
            _check_batch(inputs)
            return list(self._iterate(inputs, batch_size, kwargs))
        if isinstance(inputs, Iterator):  # a generator or a dataset iterator: stream the results
            return self._iterate(inputs, batch_size, kwargs)
        raise TypeError(f"unsupported input {_shorten(inputs)}: {_USAGE}")

    def _iterate(self, inputs: Iterable[Any], batch_size: int | None, kwargs: dict) -> Iterator[list[dict]]:
        """Preprocess, score in padded batches of ``batch_size`` histories, postprocess; lazily."""
        batch_size = batch_size or self._batch_size or DEFAULT_BATCH_SIZE
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        preprocess_params, forward_params, postprocess_params = self.with_defaults(*self._sanitize_parameters(**kwargs))
        pending: list[dict] = []
        for item in inputs:
            if not isinstance(item, dict):
                raise TypeError(f"every element of a batch must be a dict; got {_shorten(item)}: {_USAGE}")
            pending.append(self.preprocess(item, **preprocess_params))
            if len(pending) == batch_size:
                yield from self._score_batch(pending, forward_params, postprocess_params)
                pending = []
        if pending:
            yield from self._score_batch(pending, forward_params, postprocess_params)

    def with_defaults(self, preprocess: dict, forward: dict, postprocess: dict) -> tuple[dict, dict, dict]:
        """The parameters of a call (from ``_sanitize_parameters``) over those given when the pipeline was built."""
        return (
            {**self._preprocess_params, **preprocess},
            {**self._forward_params, **forward},
            {**self._postprocess_params, **postprocess},
        )

    def _score_batch(self, records: list[dict], forward_params: dict, postprocess_params: dict) -> Iterator[list[dict]]:
        outputs = self.forward(_collate(records), **forward_params)
        for row in range(len(records)):
            yield self.postprocess({key: value[row : row + 1] for key, value in outputs.items()}, **postprocess_params)

    # ------------------------------------------------------------------ the three steps
    def preprocess(self, inputs: dict, fallback: str | None = None) -> dict[str, list]:
        """One history -> item-table rows: map ids or titles, order by time, truncate to ``max_len``.

        Returns a batch of one (every value a one-element list); ``_collate`` concatenates them.
        """
        if not isinstance(inputs, dict):
            raise TypeError(f"unsupported input {_shorten(inputs)}: {_USAGE}")
        extra = sorted(set(inputs) - set(INPUT_KEYS))
        if extra:
            raise ValueError(f"unknown key(s) {extra} in a history; the keys are {list(INPUT_KEYS)}")
        if ("history" in inputs) == ("history_text" in inputs):
            raise ValueError(f'a history needs exactly one of "history" (item ids) and "history_text" (titles): {_USAGE}')
        key = "history" if "history" in inputs else "history_text"
        values = inputs[key]
        if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
            raise TypeError(f'"{key}" must be a list; got {_shorten(values)}')
        values = list(values)
        if "timestamps" in inputs:
            values = _in_time_order(values, inputs["timestamps"])

        if key == "history":
            rows, unknown = self.catalog.rows_for_ids(values)
            if unknown:
                warnings.warn(
                    f"{len(unknown)} of {len(values)} history items are not in the catalogue and were skipped: "
                    f"{_quote(unknown)}",
                    UnknownItemWarning,
                    stacklevel=4,
                )
        else:
            rows, unknown = self._rows_for_texts(values)

        if not rows:
            if fallback == "popular":
                return {"input_item_ids": [[]], "seen": [[]], "popular": [True]}
            if not values:
                raise ValueError('the history is empty; pass at least one item, or fallback="popular" for a cold-start user')
            raise ValueError(
                f"none of the {len(values)} history items is in the catalogue of {len(self.catalog)} items "
                f"(e.g. {_quote(unknown[:5])}); pass fallback=\"popular\" to recommend popular items instead"
            )
        # The most recent max_len items are read; every item of the history counts as seen.
        return {"input_item_ids": [rows[-self.max_len :]], "seen": [sorted(set(rows))], "popular": [False]}

    def _rows_for_texts(self, texts: list[object]) -> tuple[list[int], list[object]]:
        rows, unknown, ambiguous = [], [], {}
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f'"history_text" holds item titles (strings); got {text!r}')
            matches = self.catalog.match_text(text)
            if len(matches) == 1:
                rows.append(matches[0])
            elif matches:
                ambiguous[text] = matches
            else:
                unknown.append(text)
        if unknown:
            warnings.warn(
                f"{len(unknown)} of {len(texts)} titles match no catalogue item and were skipped: {_quote(unknown)}",
                UnknownItemWarning,
                stacklevel=5,
            )
        if ambiguous:
            described = "; ".join(
                f"{text!r} matches " + ", ".join(f"{self.catalog.item_ids[r]} ({self.catalog.texts[r]!r})" for r in matches[:5])
                for text, matches in ambiguous.items()
            )
            warnings.warn(
                f"{len(ambiguous)} ambiguous title(s) skipped (pass item ids in \"history\" instead): {described}",
                AmbiguousItemWarning,
                stacklevel=5,
            )
        return rows, unknown + list(ambiguous)

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """Scores of every catalogue item for each history of a (padded) batch."""
        histories = model_inputs["input_item_ids"]
        popular = torch.as_tensor(model_inputs["popular"], dtype=torch.bool)
        scores = torch.empty(len(histories), self.model.config.num_items)
        if popular.any():
            if self._popularity is None:
                self._popularity = _popularity_of(self.model, self.model.config.num_items)
            scores[popular] = self._popularity
        if not popular.all():
            ids, mask = pad_histories([h for h, p in zip(histories, popular.tolist()) if not p], self.device)
            logits = self.model(input_item_ids=ids, attention_mask=mask, return_logits=True).logits
            scores[~popular] = logits.float().cpu()
        return {"scores": scores, "seen": model_inputs["seen"], "popular": popular, "input_item_ids": histories}

    def postprocess(
        self,
        model_outputs: dict[str, Any],
        top_k: int = DEFAULT_TOP_K,
        exclude_seen: bool = True,
        candidates: torch.Tensor | None = None,
        return_scores: bool = True,
        explain: bool = False,
        explain_method: str = DEFAULT_METHOD,
        explain_baseline: str = DEFAULT_BASELINE,
        explain_steps: int = DEFAULT_IG_STEPS,
    ) -> list[dict[str, Any]]:
        """Mask, rank and name the items of one history."""
        scores = model_outputs["scores"][0].clone()
        # NaN would sort above everything in topk; a broken score must not be recommended.
        scores = torch.nan_to_num(scores, nan=-math.inf)
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if candidates is not None:
            allowed[:] = False
            allowed[candidates] = True
        if exclude_seen and model_outputs["seen"][0]:
            allowed[torch.as_tensor(model_outputs["seen"][0], dtype=torch.long)] = False
        rows = allowed.nonzero().flatten()
        k = min(top_k, rows.numel())
        best = torch.topk(scores[rows], k, sorted=True)
        results = []
        for rank, (score, position) in enumerate(zip(best.values.tolist(), best.indices.tolist()), start=1):
            row = int(rows[position])
            result = {"item_id": self.catalog.item_ids[row], "text": self.catalog.texts[row]}
            if return_scores:
                result["score"] = float(score)
            result["rank"] = rank
            results.append(result)
        if explain:
            recommended = [int(rows[position]) for position in best.indices.tolist()]
            history = [] if bool(model_outputs["popular"][0]) else list(model_outputs["input_item_ids"][0])
            self._explain(results, recommended, history, explain_method, explain_baseline, explain_steps)
        return results

    def _explain(
        self, results: list[dict], recommended: list[int], history: list[int], method: str, baseline: str, n_steps: int
    ) -> None:
        """Attach ``"explanation"`` to each result: every history item's contribution to its score (see explain.py)."""
        if not history or not results:  # the popularity fallback read no history: nothing explains it
            for result in results:
                result["explanation"] = []
            return
        contributions = explain_items(self.model, history, recommended, method, baseline=baseline, n_steps=n_steps)
        for result, row in zip(results, contributions.tolist()):
            result["explanation"] = explanation_records(row, history, self.catalog.item_ids, self.catalog.texts)


# ----------------------------------------------------------------------------- helpers
def _collate(records: list[dict]) -> dict[str, list]:
    """Concatenate batches of one (from ``preprocess``) into one batch."""
    return {key: [value for record in records for value in record[key]] for key in ("input_item_ids", "seen", "popular")}


def _in_time_order(values: list[object], timestamps: object) -> list[object]:
    """``values`` sorted by their timestamps; ties keep the given order (as the training data does)."""
    if isinstance(timestamps, (str, bytes, dict)) or not isinstance(timestamps, Iterable):
        raise TypeError(f'"timestamps" must be a list with one timestamp per item; got {_shorten(timestamps)}')
    timestamps = [_as_seconds(t) for t in timestamps]
    if len(timestamps) != len(values):
        raise ValueError(f'"timestamps" has {len(timestamps)} entries for {len(values)} history items; give one per item')
    order = sorted(range(len(values)), key=lambda i: timestamps[i])
    return [values[i] for i in order]


def _as_seconds(value: object) -> float:
    """A timestamp as seconds: numbers as they are, datetimes and ISO-8601 strings converted."""
    if isinstance(value, bool):
        raise TypeError(f"a timestamp must be a number, a datetime or an ISO-8601 string; got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"timestamp {value!r} is neither a number nor an ISO-8601 date/time") from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if hasattr(value, "item"):
        return _as_seconds(value.item())
    raise TypeError(f"a timestamp must be a number, a datetime or an ISO-8601 string; got {value!r}")


def _check_batch(inputs: Sequence[Any]) -> None:
    """Refuse the ambiguous flat list of ids/titles, which transformers would treat as a batch."""
    if inputs and all(not isinstance(x, (dict, list, tuple)) for x in inputs):
        raise TypeError(
            f"got a flat list {_shorten(list(inputs))}; a list passed to a pipeline is a batch, so this would be read as "
            f"{len(inputs)} separate histories. For one user pass {{\"history\": [...]}} (item ids) or "
            f"{{\"history_text\": [...]}} (titles); for several users pass a list of such dicts"
        )
    for element in inputs:
        if not isinstance(element, dict):
            raise TypeError(f"every element of a batch must be a dict; got {_shorten(element)}: {_USAGE}")


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def _quote(values: Sequence[object], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
