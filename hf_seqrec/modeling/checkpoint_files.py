"""The names of the files a hf_seqrec checkpoint holds besides ``config.json`` and its model code.

The model, the training loop, the data package and the Hub upload must agree on these names; they
read them from here. This file travels with every checkpoint (a same-folder import of
``modeling_seqrec.py``), so it imports nothing.
"""

ITEM_TABLE_FILE = "item_table.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
# Not peft's "adapter_config.json": with that file at the root, transformers' AutoModel and pipeline()
# take a Hub repo for a bare peft adapter and load `base_model_name_or_path` (the backbone) instead.
ADAPTER_CONFIG_FILE = "seqrec_adapter_config.json"
BACKBONE_FILE = "backbone.safetensors"
CATALOG_FILE = "item_catalog.jsonl"
POPULARITY_FILE = "item_popularity.json"
# input_mode="id+text": every item's text token ids (text_inputs.py).
ITEM_TEXT_TOKENS_FILE = "item_text_tokens.safetensors"
# A model trained with the reward-aware objective: its Q-learning head (q_learning.py).
Q_HEAD_FILE = "q_head.safetensors"
# Every file save_pretrained (and the training loop) may write besides config.json and the model code.
CHECKPOINT_FILES = (
    ITEM_TABLE_FILE, ADAPTER_FILE, ADAPTER_CONFIG_FILE, BACKBONE_FILE, CATALOG_FILE, POPULARITY_FILE,
    ITEM_TEXT_TOKENS_FILE, Q_HEAD_FILE,
)
# Files hf_seqrec neither writes nor reads any more that an output directory may still hold: every item's
# text encoding, and the module the files above and the catalogue once shared. A run clears them with its
# own files, so they never travel with a new checkpoint (a stray *.safetensors would also change
# checkpoint_revision).
RETIRED_FILES = ("item_text_encodings.safetensors", "checkpoint_format.py")
