"""Typed errors of the controller. The API turns each into a JSON response
`{"error": code, "message": ..., "field": ...}` with the status it carries."""
from __future__ import annotations

import math


class ControllerError(Exception):
    """An error the API answers with its status and a stable code (500 internal unless a subclass says)."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 detail: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code
        self.detail = detail or {}

    def body(self) -> dict:
        out = {"error": self.code, "message": self.message}
        if self.field:
            out["field"] = self.field
        out.update(self.detail)
        return out

    def headers(self) -> dict[str, str] | None:
        """The HTTP headers the answer carries: Retry-After (whole seconds, at least 1) when the body
        says when to try again (`retry_after_s`)."""
        wait = self.detail.get("retry_after_s")
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            return {"Retry-After": str(max(1, math.ceil(wait)))}
        return None


class Invalid(ControllerError):
    """Bad input; `field` names it (dotted path)."""
    status, code = 400, "invalid"


class Unauthorized(ControllerError):
    """No token, or one that is unknown, expired or revoked."""

    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str] | None:
        """The challenge every 401 carries (RFC 6750)."""
        return {"WWW-Authenticate": 'Bearer realm="vks"'}


class Forbidden(ControllerError):
    """The user's role (or scope) may not do this."""

    status, code = 403, "forbidden"


class NotFound(ControllerError):
    """No such thing (or out of the user's scope)."""

    status, code = 404, "not_found"


class Conflict(ControllerError):
    """The change contradicts what is stored (double booking, a duplicate id,
    a row still referenced, a state that does not allow it)."""
    status, code = 409, "conflict"
