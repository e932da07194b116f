"""Optional API-key check: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

The key is compared in constant time (``hmac.compare_digest``), so response timing does not reveal
how much of a guess was right, and it is never logged or echoed in a response.
"""

from __future__ import annotations

import hmac
from typing import Callable, Optional

from fastapi import HTTPException, Request

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hf_seqrec"'}


def supplied_keys(request: Request) -> list[str]:
    """The keys a request offers, from either header (both may be sent)."""
    keys = []
    api_key = request.headers.get("x-api-key")
    if api_key:
        keys.append(api_key.strip())
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        keys.append(credentials.strip())
    return keys


def api_key_dependency(api_key: Optional[str]) -> Callable[[Request], None]:
    """A FastAPI dependency that answers 401 unless the request carries ``api_key`` (no check when None)."""
    expected = api_key.encode("utf-8") if api_key else None

    def require_api_key(request: Request) -> None:
        if expected is None:
            return
        keys = supplied_keys(request)
        if not keys:
            raise HTTPException(401, 'missing API key: send "Authorization: Bearer KEY" or "X-API-Key: KEY"', CHALLENGE)
        # Every offered key is compared, so the time taken does not depend on which header matched.
        matched = [hmac.compare_digest(key.encode("utf-8"), expected) for key in keys]
        if not any(matched):
            raise HTTPException(401, "wrong API key", CHALLENGE)

    return require_api_key
