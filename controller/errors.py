"""Typed errors of the controller. The API turns each into a JSON response
`{"error": code, "message": ..., "field": ...}` with the status it carries."""
from __future__ import annotations


class ControllerError(Exception):
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


class Invalid(ControllerError):
    """Bad input; `field` names it (dotted path)."""
    status, code = 400, "invalid"


class Unauthorized(ControllerError):
    status, code = 401, "unauthorized"


class Forbidden(ControllerError):
    status, code = 403, "forbidden"


class NotFound(ControllerError):
    status, code = 404, "not_found"


class Conflict(ControllerError):
    """The change contradicts what is stored (double booking, a duplicate id,
    a row still referenced, a state that does not allow it)."""
    status, code = 409, "conflict"
