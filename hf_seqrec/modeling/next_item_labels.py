"""The label of a position without a next item.

The collator pads labels with it, the model's loss and the Q-learning head skip it: one value they
must agree on. This file travels with every checkpoint (a same-folder import of ``modeling_seqrec.py``),
so it imports nothing.
"""

IGNORE_INDEX = -100
