"""The one error type the demo shows its users as it is.

A ``DemoError`` is a plain sentence about what the user did (an unknown title, an empty history) and
what to do instead; the page prints it where the user is looking. Any other exception is a fault of
the program: the page says so in one line and the full traceback goes to the server's log only.
"""

from __future__ import annotations


class DemoError(ValueError):
    """A mistake the page's user can fix; its message is shown on the page unchanged."""
