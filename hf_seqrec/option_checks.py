"""The one check behind every "must be a positive integer" option: counts, sizes and limits.

Python counts ``True`` as the integer 1, so a flag passed where a count belongs would otherwise be
taken as 1; it is refused like any other non-integer.
"""

from __future__ import annotations

POSITIVE_INT_MESSAGE = "{name} must be a positive integer; got {value!r}"


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` of at least 1 (a ``bool`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(
    name: str, value: object, *, error: type[Exception] = ValueError, message: str = POSITIVE_INT_MESSAGE
) -> None:
    """Raise ``error`` with ``message`` (formatted with ``name`` and ``value``) unless ``value`` is a positive integer.

    ``error`` and ``message`` let each caller keep the exception type and wording its users already see.
    """
    if not is_positive_int(value):
        raise error(message.format(name=name, value=value))
