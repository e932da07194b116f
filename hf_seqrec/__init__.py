"""hf_seqrec: next-item recommendation with a LoRA-fine-tuned pretrained language model.

Importing the package registers `SeqRecConfig` / `SeqRecForNextItem` with transformers'
Auto classes, so `AutoModel.from_pretrained(checkpoint)` works.
"""

from transformers import AutoConfig, AutoModel

from .modeling import SeqRecConfig, SeqRecForNextItem

__version__ = "0.1.0"

AutoConfig.register(SeqRecConfig.model_type, SeqRecConfig, exist_ok=True)
AutoModel.register(SeqRecConfig, SeqRecForNextItem, exist_ok=True)

__all__ = ["SeqRecConfig", "SeqRecForNextItem", "__version__"]
