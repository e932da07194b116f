"""Everything a checkpoint carries: configuration, model, backbones, the next-item pipeline and the checkpoint files.

``save_pretrained`` copies ``modeling_seqrec.py``, ``configuration_seqrec.py`` and every same-folder module
they import into the checkpoint, and ``trust_remote_code`` runs those copies where hf_seqrec is not
installed. So no module here imports anything of hf_seqrec outside this folder (tests/test_checkpoint_room.py).
"""

from .backbones import BUILTIN_BACKBONES, load_backbone, resolve_backbone
from .configuration_seqrec import SeqRecConfig
from .item_table import ItemTable
from .modeling_seqrec import NextItemOutput, SeqRecForNextItem

__all__ = [
    "BUILTIN_BACKBONES",
    "ItemTable",
    "NextItemOutput",
    "SeqRecConfig",
    "SeqRecForNextItem",
    "load_backbone",
    "resolve_backbone",
]
