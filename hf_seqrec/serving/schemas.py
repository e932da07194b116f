"""Request bodies of ``POST /recommend``: the pipeline's inputs and call parameters, with bounds.

A body is one history, ``{"history": [...], "top_k": 5, ...}``, or several sharing the parameters,
``{"inputs": [{"history": [...]}, ...], "top_k": 5}``. The types mirror what `pipeline("next-item")`
accepts (item ids are strings or integers; timestamps numbers or ISO-8601 strings); the bounds keep
one request from costing unbounded work. Parameters not declared here pass through to the pipeline,
which refuses the ones it does not know, so a pipeline that gains a parameter is served at once.

(No ``from __future__ import annotations`` here: the models are built inside a function, and
pydantic must see the bounds' values, not their names.)
"""

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)



def _item_id(value: Any) -> Union[str, int, float]:
    """What the pipeline takes as an item id (one error per bad id, not one per member of a Union)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"an item id is a string or an integer; got {_shorten(value)}")
    return value


def _timestamp(value: Any) -> Union[str, int, float]:
    """What the pipeline takes as a timestamp: a number (seconds) or an ISO-8601 string."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"a timestamp is a number or an ISO-8601 string; got {_shorten(value)}")
    return value


def _shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


ItemId = Annotated[Union[str, int, float], PlainValidator(_item_id, json_schema_input_type=Union[str, int])]
Timestamp = Annotated[Union[str, int, float], PlainValidator(_timestamp, json_schema_input_type=Union[float, str])]
HISTORY_FIELDS = ("history", "history_text", "timestamps")
# The call parameters the pipeline documents; anything else in a body goes to the pipeline as is.
DECLARED_PARAMETERS = (
    "top_k", "exclude_seen", "candidates", "return_scores", "fallback",
    "explain", "explain_method", "explain_baseline", "explain_steps",
)
# Integrated gradients cost explain_steps forward and backward passes per recommended item.
MAX_EXPLAIN_STEPS = 256
# Set by the server, not by a request.
SERVER_PARAMETERS = {"batch_size": "histories per forward pass are set by the server (--max_batch_size)"}


def request_models(*, max_history: int, max_top_k: int, max_candidates: int, max_inputs: int) -> type[BaseModel]:
    """The request model for these bounds (built per app, since the bounds come from the model served)."""

    class History(BaseModel):
        """One user's history: item ids (or titles), oldest first, optionally with one timestamp each."""

        model_config = ConfigDict(extra="forbid")

        history: Optional[Annotated[list[ItemId], Field(max_length=max_history)]] = None
        history_text: Optional[Annotated[list[StrictStr], Field(max_length=max_history)]] = None
        timestamps: Optional[Annotated[list[Timestamp], Field(max_length=max_history)]] = None

        @field_validator("timestamps")
        @classmethod
        def _one_per_item(cls, timestamps: Optional[list], info: ValidationInfo) -> Optional[list]:
            items = info.data.get("history") or info.data.get("history_text")
            if timestamps is not None and items is not None and len(timestamps) != len(items):
                raise ValueError(f"has {len(timestamps)} entries for {len(items)} history items; give one per item")
            return timestamps

        def pipeline_input(self) -> dict[str, Any]:
            """The history as the pipeline takes it (keys left out where not given)."""
            return {key: getattr(self, key) for key in HISTORY_FIELDS if getattr(self, key) is not None}

    class RecommendRequest(History):
        """One history (``history``/``history_text`` at the top) or several (``inputs``), and the call parameters."""

        model_config = ConfigDict(extra="allow")

        inputs: Optional[Annotated[list[History], Field(min_length=1, max_length=max_inputs)]] = None
        top_k: Optional[Annotated[StrictInt, Field(ge=1, le=max_top_k)]] = None
        exclude_seen: Optional[StrictBool] = None
        candidates: Optional[Annotated[list[ItemId], Field(min_length=1, max_length=max_candidates)]] = None
        return_scores: Optional[StrictBool] = None
        fallback: Optional[Literal["popular"]] = None
        explain: Optional[StrictBool] = None
        explain_method: Optional[StrictStr] = None  # the pipeline checks the name
        explain_baseline: Optional[StrictStr] = None
        explain_steps: Optional[Annotated[StrictInt, Field(ge=2, le=MAX_EXPLAIN_STEPS)]] = None

        @model_validator(mode="after")
        def _one_form(self) -> "RecommendRequest":
            given = [key for key in ("history", "history_text") if getattr(self, key) is not None]
            if self.inputs is not None:
                if given or self.timestamps is not None:
                    raise ValueError('give either "inputs" (a list of histories) or one history at the top level, not both')
            elif len(given) != 1:
                raise ValueError('a request needs exactly one of "history" (item ids) and "history_text" (titles), or "inputs"')
            for name in self.model_extra or {}:
                if name in SERVER_PARAMETERS:
                    raise ValueError(f"{name!r}: {SERVER_PARAMETERS[name]}")
            return self

        @property
        def is_batch(self) -> bool:
            return self.inputs is not None

        def histories(self) -> list[dict[str, Any]]:
            if self.inputs is not None:
                return [history.pipeline_input() for history in self.inputs]
            return [self.pipeline_input()]

        def parameters(self) -> dict[str, Any]:
            """The call parameters given (None means the pipeline's default, as in a direct call)."""
            declared = {name: getattr(self, name) for name in DECLARED_PARAMETERS if getattr(self, name) is not None}
            return {**declared, **{k: v for k, v in (self.model_extra or {}).items() if v is not None}}

    return RecommendRequest
