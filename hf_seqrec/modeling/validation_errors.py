"""Errors raised for user data that cannot be used as given.

Every message names where the problem is (file, row, field), what was found and
what was expected, so that a user can fix the input without reading our code.

It lives with the checkpoint code because the item catalogue (``item_catalog.py``), which every
checkpoint carries, raises it for an unusable catalogue; ``hf_seqrec.data`` raises the same class for
every other problem with the user's data. This file imports nothing.
"""

from __future__ import annotations


class DataValidationError(ValueError):
    """Raised when interactions or item metadata do not match what hf_seqrec needs."""

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        row: int | None = None,
        line: int | None = None,
        field: str | None = None,
        found: object = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.source = source
        self.row = row
        # Physical line in a text file (csv/tsv/jsonl); differs from ``row`` by the
        # header and any blank lines, and it is what an editor shows.
        self.line = line
        self.field = field
        self.found = found
        self.expected = expected
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.source is not None:
            # In-memory sources are labelled like "<pandas.DataFrame>" and are not files.
            where.append(self.source if self.source.startswith("<") else f"file {self.source}")
        if self.line is not None:
            where.append(f"line {self.line}" + (f" (data row {self.row})" if self.row is not None else ""))
        elif self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        message = f"{', '.join(where)}: {self.problem}" if where else self.problem
        if self.found is not None:
            message += f"; found {self.found!r}"
        if self.expected is not None:
            message += f"; expected {self.expected}"
        if self.hint:
            message += f". {self.hint}"
        return message
