"""Errors raised for user data that cannot be used as given.

The class lives with the checkpoint code (``hf_seqrec/modeling/validation_errors.py``), because the
item catalogue every checkpoint carries raises it too; this module is its name in the data package.
"""

from __future__ import annotations

from ..modeling.validation_errors import DataValidationError

__all__ = ["DataValidationError"]
