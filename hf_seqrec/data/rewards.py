"""The reward of an interaction, as a function of its rating that the user writes on the command line.

``--reward "rating>=4:1.0,else:0.2"`` reads as ordered rules: the first rule whose comparison holds for
the interaction's rating gives the reward, and the mandatory last rule ``else:VALUE`` covers every other
rating. The reward-aware objective (SQN, ``hf_seqrec.modeling.q_learning``) learns from these rewards;
the data pipeline only needs them per training target, so the rules are applied where a batch is
collated.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Sequence

# Comparison operators a rule may use, longest first so that ">=" is not read as ">" followed by "=".
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
EXPECTED_FORM = (
    "ordered rules 'rating OP THRESHOLD:VALUE' separated by commas and ending in 'else:VALUE', "
    f"with OP one of {', '.join(COMPARISONS)}, e.g. 'rating>=4:1.0,else:0.2'"
)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RULE = re.compile(rf"^rating\s*({'|'.join(re.escape(op) for op in COMPARISONS)})\s*({_NUMBER})\s*:\s*({_NUMBER})$")
_ELSE = re.compile(rf"^else\s*:\s*({_NUMBER})$")


class RewardSyntaxError(ValueError):
    """A ``--reward`` text that is not a list of rating rules; the message quotes it and shows the expected form."""


@dataclass(frozen=True)
class RewardRule:
    """``rating OP threshold -> value``."""

    comparison: str
    threshold: float
    value: float

    def matches(self, rating: float) -> bool:
        return COMPARISONS[self.comparison](rating, self.threshold)

    def __str__(self) -> str:
        return f"rating{self.comparison}{self.threshold:g}:{self.value:g}"


@dataclass(frozen=True)
class RewardRules:
    """Ordered rating rules and the ``else`` value: a plain, picklable function from a rating to a reward.

    Picklable because the collator that applies it may run in DataLoader worker processes.
    """

    rules: tuple[RewardRule, ...]
    otherwise: float

    @classmethod
    def parse(cls, text: str) -> "RewardRules":
        """Read ``"rating>=4:1.0,else:0.2"``; anything else is a :class:`RewardSyntaxError` quoting ``text``."""
        if not isinstance(text, str) or not text.strip():
            raise RewardSyntaxError(f"reward: cannot read {text!r}; expected {EXPECTED_FORM}")
        parts = [part.strip() for part in text.split(",")]
        *conditions, last = parts
        rules = tuple(_parse_rule(text, part) for part in conditions)
        found = _ELSE.match(last)
        if found is None:
            problem = "its last rule must be 'else:VALUE'" if not any(_ELSE.match(p) for p in conditions) else "'else' must come last"
            raise RewardSyntaxError(f"reward: cannot read {text!r}: {problem}; expected {EXPECTED_FORM}")
        return cls(rules, _finite(text, found.group(1)))

    def __call__(self, rating: float) -> float:
        """The value of the first rule that holds for ``rating``, else the ``else`` value."""
        for rule in self.rules:
            if rule.matches(rating):
                return rule.value
        return self.otherwise

    def rewards(self, ratings: Sequence[float]) -> list[float]:
        """The reward of each rating, in order."""
        return [self(rating) for rating in ratings]

    def __str__(self) -> str:
        return ",".join([*map(str, self.rules), f"else:{self.otherwise:g}"])


def _parse_rule(text: str, part: str) -> RewardRule:
    found = _RULE.match(part)
    if found is None:
        problem = "'else' must come last" if _ELSE.match(part) else f"the rule {part!r} is not 'rating OP THRESHOLD:VALUE'"
        raise RewardSyntaxError(f"reward: cannot read {text!r}: {problem}; expected {EXPECTED_FORM}")
    comparison, threshold, value = found.groups()
    return RewardRule(comparison, _finite(text, threshold), _finite(text, value))


def _finite(text: str, number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise RewardSyntaxError(f"reward: cannot read {text!r}: {number!r} is not a finite number; expected {EXPECTED_FORM}")
    return value
