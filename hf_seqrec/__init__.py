"""hf_seqrec: next-item recommendation with a LoRA-fine-tuned pretrained language model.

Importing the package registers `SeqRecConfig` / `SeqRecForNextItem` with transformers'
Auto classes, so `AutoModel.from_pretrained(checkpoint)` works, and the `"next-item"` pipeline task,
so `transformers.pipeline("next-item", model=checkpoint)` works.
"""

from transformers import AutoConfig, AutoModel

from .modeling import SeqRecConfig, SeqRecForNextItem

__version__ = "0.1.0"

AutoConfig.register(SeqRecConfig.model_type, SeqRecConfig, exist_ok=True)
AutoModel.register(SeqRecConfig, SeqRecForNextItem, exist_ok=True)
# Checkpoints carry their own code (config.json "auto_map" + the modeling and pipeline files), so
# `AutoModel` / `pipeline(..., trust_remote_code=True)` load them where hf_seqrec is not installed.
SeqRecConfig.register_for_auto_class()
SeqRecForNextItem.register_for_auto_class("AutoModel")

from .pipelines import NextItemPipeline, register_pipeline  # noqa: E402

register_pipeline()

__all__ = ["NextItemPipeline", "SeqRecConfig", "SeqRecForNextItem", "__version__"]
