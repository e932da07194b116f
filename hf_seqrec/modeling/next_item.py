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

The steps of a call are public, for callers that batch histories themselves (an HTTP service scoring
many requests together, a batch job):

    >>> params = recommend.call_parameters(top_k=5)          # checked once for many histories
    >>> prepared = recommend.prepare(histories, params)      # each history checked and mapped to item rows
    >>> scores = recommend.score(prepared)                   # one forward pass, one row per history
    >>> [recommend.finish(row, history) for row, history in zip(scores, prepared)]

``pipe(inputs, **params)`` is exactly these steps. Histories prepared with different parameters may
share a forward pass: the parameters only change how a history is prepared and ranked. A refused
history or parameter raises a `RequestError` (a ``ValueError`` or ``TypeError``, as a call raises)
whose ``field`` names the history key or parameter at fault and whose ``index`` says which history.

This file is also the checkpoint's own copy of the pipeline: ``modeling_seqrec.py`` imports it, so
``save_pretrained`` copies it with the model code and names it in config.json's ``custom_pipelines``,
and ``pipeline(model=checkpoint, trust_remote_code=True)`` works where hf_seqrec is not installed. It
therefore imports nothing from hf_seqrec, only torch, transformers and the standard library (and its
same-folder ``precision.py``, ``explain.py`` and ``padding.py``, copied with it), and never the model's
own module, which imports it. It reads no file either: the model brings its item catalogue
(``model.item_catalog``, with the rules that normalise ids and titles, see ``item_catalog.py``) and its
popularity counts (``model.item_popularity``, see ``popularity_counts.py``), both loaded by ``from_pretrained``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import itertools
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from transformers import Pipeline

from .explain import DEFAULT_BASELINE, DEFAULT_IG_STEPS, DEFAULT_METHOD, explain_parameters, explanation_records
from .explain import explain as explain_items
from .padding import pad_histories
from .precision import check_precision, prepare_for_inference

# The pipeline task this module implements, the key of its entry in config.json's "custom_pipelines".
TASK = "next-item"
DEFAULT_TOP_K = 10
DEFAULT_BATCH_SIZE = 64
FALLBACKS = (None, "popular")
INPUT_KEYS = ("history", "history_text", "timestamps")
EXPLAIN_PARAMETERS = ("explain", "explain_method", "explain_baseline", "explain_steps")
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


class RequestError(Exception):
    """The pipeline refuses a history or a call parameter; raised as `RequestValueError` or `RequestTypeError`.

    ``field`` names what is at fault, so that a caller can point at it without reading the message:
    a key of the history (``"history"``, ``"history_text"``, ``"timestamps"``, an unknown key) or a
    call parameter (``"top_k"``, ``"candidates"``, an unknown one); None for the input as a whole.
    ``index`` is the position of the refused history among the inputs (None for a call parameter).
    """

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


class RequestValueError(RequestError, ValueError):
    """A value the pipeline refuses; still a ``ValueError`` for callers that catch those."""


class RequestTypeError(RequestError, TypeError):
    """A value of a type the pipeline does not take; still a ``TypeError`` for callers that catch those."""


@dataclasses.dataclass(frozen=True)
class CallParameters:
    """A call's checked parameters, over those the pipeline was built with (see `NextItemPipeline.call_parameters`).

    ``preprocess`` applies when a history is prepared (``fallback``), ``postprocess`` when its scores
    are ranked (``top_k``, ``exclude_seen``, ``candidates``, ``return_scores``, ``explain*``).
    """

    preprocess: dict[str, Any]
    postprocess: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class PreparedHistory:
    """One history ready to score (see `NextItemPipeline.prepare`), with the parameters that rank it."""

    rows: list[int]  # the item-table rows the model reads: the most recent max_len, oldest first
    seen: list[int]  # every row of the history, sorted and distinct (never recommended under exclude_seen)
    popular: bool = False  # no known item and fallback="popular": ranked by popularity, not by the model
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # the call's postprocess parameters


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
            raise RequestTypeError(
                "precision is chosen once, when the pipeline is built: "
                f"pipeline(\"next-item\", model=..., precision={unknown['precision']!r}), not per call",
                field="precision",
            )
        if unknown:
            raise RequestTypeError(
                f"unknown next-item pipeline parameter(s) {sorted(unknown)}; the parameters are top_k, exclude_seen, "
                "candidates, return_scores, fallback, explain, explain_method, explain_baseline, explain_steps and batch_size",
                field=next(iter(unknown)),
            )
        preprocess: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise RequestValueError(f"top_k must be a positive integer; got {top_k!r}", field="top_k")
            postprocess["top_k"] = top_k
        if exclude_seen is not None:
            postprocess["exclude_seen"] = _check_bool("exclude_seen", exclude_seen)
        if return_scores is not None:
            postprocess["return_scores"] = _check_bool("return_scores", return_scores)
        if candidates is not None:
            postprocess["candidates"] = self._candidate_rows(candidates)
        if fallback is not None:
            if fallback not in FALLBACKS:
                raise RequestValueError(f"fallback must be None or 'popular'; got {fallback!r}", field="fallback")
            preprocess["fallback"] = fallback
        postprocess.update(_explain_options(explain, explain_method, explain_baseline, explain_steps))
        return preprocess, {}, postprocess

    def _candidate_rows(self, candidates: Sequence[object]) -> torch.Tensor:
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Iterable):
            raise RequestTypeError(f"candidates must be a list of item ids; got {candidates!r}", field="candidates")
        with _refused_as("candidates"):
            rows, unknown = self.catalog.rows_for_ids(list(candidates))
        if unknown:
            warnings.warn(f"candidates not in the catalogue, skipped: {_quote(unknown)}", UnknownItemWarning, stacklevel=6)
        if not rows:
            raise RequestValueError(
                f"none of the {len(unknown)} candidates is in the catalogue of {len(self.catalog)} items", field="candidates"
            )
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
        """Prepare, score in batches of ``batch_size`` histories and finish each; lazily."""
        batch_size = batch_size or self._batch_size or DEFAULT_BATCH_SIZE
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        params = self.call_parameters(**kwargs)
        inputs = iter(inputs)
        start = 0
        while chunk := list(itertools.islice(inputs, batch_size)):
            prepared = self.prepare(chunk, params, start=start)
            for scores, history in zip(self.score(prepared), prepared):
                yield self.finish(scores, history)
            start += len(chunk)

    # ------------------------------------------------------------------ the steps of a call, for callers that batch
    def call_parameters(self, **params: Any) -> CallParameters:
        """Check the parameters of a call (all but ``batch_size``) once, for any number of histories.

        Those given when the pipeline was built apply where ``params`` leaves one out. A refused
        parameter raises a `RequestError` whose ``field`` is its name.
        """
        preprocess, _, postprocess = self._sanitize_parameters(**params)
        return CallParameters({**self._preprocess_params, **preprocess}, {**self._postprocess_params, **postprocess})

    def prepare(
        self, inputs: Iterable[dict], params: CallParameters | None = None, *, start: int = 0
    ) -> list[PreparedHistory]:
        """Check each history (a dict, as a call takes it) and map it to item-table rows, ready for `score`.

        ``params`` come from `call_parameters` (default: the pipeline's own). Skipped items warn as a
        call does. A refused history raises a `RequestError` whose ``field`` is the key at fault and
        whose ``index`` is its position in ``inputs`` plus ``start`` (for a caller preparing in parts).
        """
        if params is None:
            params = self.call_parameters()
        prepared = []
        for index, history in enumerate(inputs, start):
            if not isinstance(history, dict):
                raise RequestTypeError(f"every element of a batch must be a dict; got {_shorten(history)}: {_USAGE}", index=index)
            try:
                ready = self.preprocess(history, **params.preprocess)
            except RequestError as error:
                error.index = index
                raise
            prepared.append(dataclasses.replace(ready, params=params.postprocess))
        return prepared

    def score(self, prepared: Sequence[PreparedHistory]) -> torch.Tensor:
        """Every catalogue item's score for each prepared history, in one forward pass: ``[len(prepared), num_items]``.

        The histories may come from calls with different parameters: these never change a score.
        """
        return self.forward(list(prepared))

    def finish(self, scores: torch.Tensor, prepared: PreparedHistory) -> list[dict[str, Any]]:
        """The recommendations of one history, from its row of `score`, ranked with its call's parameters.

        An explanation the model cannot give (e.g. integrated gradients under int8) raises a
        `RequestError` about ``explain_method``.
        """
        return self.postprocess((scores, prepared), **prepared.params)

    # ------------------------------------------------------------------ the three steps (transformers' Pipeline hooks)
    def preprocess(self, inputs: dict, fallback: str | None = None) -> PreparedHistory:
        """One history -> item-table rows: map ids or titles, order by time, truncate to ``max_len``."""
        extra = sorted(set(inputs) - set(INPUT_KEYS))
        if extra:
            raise RequestValueError(f"unknown key(s) {extra} in a history; the keys are {list(INPUT_KEYS)}", field=str(extra[0]))
        key = "history_text" if "history_text" in inputs else "history"
        if ("history" in inputs) == ("history_text" in inputs):
            raise RequestValueError(
                f'a history needs exactly one of "history" (item ids) and "history_text" (titles): {_USAGE}', field=key
            )
        values = inputs[key]
        if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
            raise RequestTypeError(f'"{key}" must be a list; got {_shorten(values)}', field=key)
        values = list(values)
        if "timestamps" in inputs:
            values = _in_time_order(values, inputs["timestamps"])

        if key == "history":
            with _refused_as(key):
                rows, unknown = self.catalog.rows_for_ids(values)
            if unknown:
                warnings.warn(
                    f"{len(unknown)} of {len(values)} history items are not in the catalogue and were skipped: "
                    f"{_quote(unknown)}",
                    UnknownItemWarning,
                    stacklevel=5,
                )
        else:
            rows, unknown = self._rows_for_texts(values)

        if not rows:
            if fallback == "popular":
                return PreparedHistory(rows=[], seen=[], popular=True)
            if not values:
                raise RequestValueError(
                    'the history is empty; pass at least one item, or fallback="popular" for a cold-start user', field=key
                )
            raise RequestValueError(
                f"none of the {len(values)} history items is in the catalogue of {len(self.catalog)} items "
                f"(e.g. {_quote(unknown[:5])}); pass fallback=\"popular\" to recommend popular items instead",
                field=key,
            )
        # The most recent max_len items are read; every item of the history counts as seen.
        return PreparedHistory(rows=rows[-self.max_len :], seen=sorted(set(rows)))

    def _rows_for_texts(self, texts: list[object]) -> tuple[list[int], list[object]]:
        rows, unknown, ambiguous = [], [], {}
        for text in texts:
            if not isinstance(text, str):
                raise RequestTypeError(f'"history_text" holds item titles (strings); got {text!r}', field="history_text")
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
                stacklevel=6,
            )
        if ambiguous:
            described = "; ".join(
                f"{text!r} matches " + ", ".join(f"{self.catalog.item_ids[r]} ({self.catalog.texts[r]!r})" for r in matches[:5])
                for text, matches in ambiguous.items()
            )
            warnings.warn(
                f"{len(ambiguous)} ambiguous title(s) skipped (pass item ids in \"history\" instead): {described}",
                AmbiguousItemWarning,
                stacklevel=6,
            )
        return rows, unknown + list(ambiguous)

    def _forward(self, model_inputs: list[PreparedHistory]) -> torch.Tensor:
        """Scores of every catalogue item for each history of a batch (padded for the model)."""
        popular = torch.tensor([history.popular for history in model_inputs], dtype=torch.bool)
        scores = torch.empty(len(model_inputs), self.model.config.num_items)
        if popular.any():
            if self._popularity is None:
                self._popularity = _popularity_of(self.model, self.model.config.num_items)
            scores[popular] = self._popularity
        if not popular.all():
            ids, mask = pad_histories([history.rows for history in model_inputs if not history.popular], self.device)
            logits = self.model(input_item_ids=ids, attention_mask=mask, return_logits=True).logits
            scores[~popular] = logits.float().cpu()
        return scores

    def postprocess(
        self,
        model_outputs: tuple[torch.Tensor, PreparedHistory],
        top_k: int = DEFAULT_TOP_K,
        exclude_seen: bool = True,
        candidates: torch.Tensor | None = None,
        return_scores: bool = True,
        explain: bool = False,
        explain_method: str = DEFAULT_METHOD,
        explain_baseline: str = DEFAULT_BASELINE,
        explain_steps: int = DEFAULT_IG_STEPS,
    ) -> list[dict[str, Any]]:
        """Mask, rank and name the items of one history (``model_outputs``: its scores and the history)."""
        scores, history = model_outputs
        # NaN would sort above everything in topk; a broken score must not be recommended.
        scores = torch.nan_to_num(scores, nan=-math.inf)
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if candidates is not None:
            allowed[:] = False
            allowed[candidates] = True
        if exclude_seen and history.seen:
            allowed[torch.as_tensor(history.seen, dtype=torch.long)] = False
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
            read = [] if history.popular else list(history.rows)
            with _refused_as("explain_method"):
                self._explain(results, recommended, read, explain_method, explain_baseline, explain_steps)
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
def _in_time_order(values: list[object], timestamps: object) -> list[object]:
    """``values`` sorted by their timestamps; ties keep the given order (as the training data does)."""
    if isinstance(timestamps, (str, bytes, dict)) or not isinstance(timestamps, Iterable):
        raise RequestTypeError(
            f'"timestamps" must be a list with one timestamp per item; got {_shorten(timestamps)}', field="timestamps"
        )
    timestamps = [_as_seconds(t) for t in timestamps]
    if len(timestamps) != len(values):
        raise RequestValueError(
            f'"timestamps" has {len(timestamps)} entries for {len(values)} history items; give one per item', field="timestamps"
        )
    order = sorted(range(len(values)), key=lambda i: timestamps[i])
    return [values[i] for i in order]


def _as_seconds(value: object) -> float:
    """A timestamp as seconds: numbers as they are, datetimes and ISO-8601 strings converted."""
    if isinstance(value, bool):
        raise _not_a_timestamp(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise RequestValueError(
                f"timestamp {value!r} is neither a number nor an ISO-8601 date/time", field="timestamps"
            ) from None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if hasattr(value, "item"):
        return _as_seconds(value.item())
    raise _not_a_timestamp(value)


def _not_a_timestamp(value: object) -> RequestTypeError:
    return RequestTypeError(f"a timestamp must be a number, a datetime or an ISO-8601 string; got {value!r}", field="timestamps")


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
        raise RequestTypeError(f"{name} must be True or False; got {value!r}", field=name)
    return value


def _explain_options(explain: object, method: object, baseline: object, steps: object) -> dict[str, Any]:
    """The postprocess parameters of the ``explain*`` parameters, checked by explain.py one at a time.

    One at a time, so that a refusal is a `RequestError` naming the parameter it is about.
    """
    given = (explain, method, baseline, steps)
    options: dict[str, Any] = {}
    for position, name in enumerate(EXPLAIN_PARAMETERS):
        if given[position] is None:
            continue
        alone = [None] * len(given)
        alone[position] = given[position]
        with _refused_as(name):
            options.update(explain_parameters(*alone))
    return options


@contextlib.contextmanager
def _refused_as(field: str) -> Iterator[None]:
    """A TypeError or ValueError raised inside (by code that knows nothing of requests) as a `RequestError` about ``field``.

    The message and the traceback are the original ones; a `RequestError` passes through as it is.
    """
    try:
        yield
    except RequestError:
        raise
    except (TypeError, ValueError) as error:
        refusal = RequestTypeError if isinstance(error, TypeError) else RequestValueError
        raise refusal(str(error), field=field).with_traceback(error.__traceback__) from None


def _quote(values: Sequence[object], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
