"""The ``"next-item"`` pipeline and its registration with transformers.

``import hf_seqrec`` calls :func:`register_pipeline`, after which
``transformers.pipeline("next-item", model=checkpoint_dir_or_hub_id)`` builds a :class:`NextItemPipeline`.

The pipeline itself lives with the model code in ``hf_seqrec/modeling/next_item.py`` (with
``explain.py``, ``precision.py`` and ``padding.py``): ``modeling_seqrec.py`` imports it, so every
checkpoint carries its own copy (named in config.json's ``custom_pipelines``), and
``pipeline(model=checkpoint, trust_remote_code=True)`` works where hf_seqrec is not installed. Where hf_seqrec *is* imported its config class ignores ``custom_pipelines`` (else
transformers would insist on trust_remote_code for the registered task), so name the task there:
``pipeline("next-item", model=...)``.

Callers that batch histories themselves (the HTTP service) use the steps of a call, which the
pipeline makes public: ``call_parameters``, ``prepare``, ``score`` and ``finish``; what they refuse
is a :class:`RequestError` naming the field at fault (see ``hf_seqrec/modeling/next_item.py``).
"""

from __future__ import annotations

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

# The popularity counts the pipeline's fallback="popular" ranks by, written with every checkpoint.
from ..modeling.checkpoint_files import POPULARITY_FILE
from ..modeling.next_item import (
    TASK,
    AmbiguousItemWarning,
    CallParameters,
    NextItemPipeline,
    PreparedHistory,
    RequestError,
    RequestTypeError,
    RequestValueError,
    UnknownItemWarning,
)
from ..modeling.popularity_counts import item_popularity, save_item_popularity


def register_pipeline() -> None:
    """Register ``"next-item"`` with transformers (idempotent).

    ``pt_model`` must be an Auto class: transformers writes the class *name* into a saved
    config's ``custom_pipelines`` and looks it up on the transformers module when loading.
    """
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is NextItemPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=NextItemPipeline, pt_model=AutoModel, type="multimodal")


__all__ = [
    "POPULARITY_FILE",
    "TASK",
    "AmbiguousItemWarning",
    "CallParameters",
    "NextItemPipeline",
    "PreparedHistory",
    "RequestError",
    "RequestTypeError",
    "RequestValueError",
    "UnknownItemWarning",
    "item_popularity",
    "register_pipeline",
    "save_item_popularity",
]
