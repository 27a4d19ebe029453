"""Reading a request and writing a response: the JSON body (validated by a pydantic model), path and
query parameters, and JSON answers. Every parse error is a typed `Invalid` (400) or `NotFound` (404)
naming the field; the error middleware (controller.api.routing) turns it into JSON."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from contract.vocab import words
from controller.api.audit import AUDIT_KEY
from controller.errors import ControllerError, Invalid, NotFound
from controller.keys import CLOCK_KEY, SETTINGS_KEY, USER_KEY
from controller.store.hearings import iso

API = "/api/v1"
M = TypeVar("M", bound=BaseModel)


def _default(o: object) -> str | None:
    if isinstance(o, dt.datetime):
        return iso(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dumps(data: Any) -> str:
    """JSON text of `data` (times as ISO-8601 UTC, non-ASCII kept)."""
    return json.dumps(data, default=_default, ensure_ascii=False)


def ok(data: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(text=dumps(data), status=status, content_type="application/json")


def error_response(status: int, body: dict, headers: dict | None = None) -> web.Response:
    """A JSON error response {"error", "message"[, "field"]}."""
    return web.Response(text=dumps(body), status=status, content_type="application/json", headers=headers)


def row(d: dict) -> dict:
    """A database row with its times as ISO-8601 strings."""
    return {k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in d.items()}


_FIELD_IN_MSG = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.]*): ")


def invalid_from(exc: ValidationError, prefix: str = "") -> Invalid:
    """The first error of a pydantic validation as an `Invalid` naming its dotted field."""
    e = exc.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"]
    hit = _FIELD_IN_MSG.match(msg)
    if not loc and hit:
        loc, msg = hit.group(1), msg[hit.end():]
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    where = ".".join(p for p in (prefix, loc) if p) or "body"
    return Invalid(f"{where}: {msg}", field=where)


def _unstorable(data: Any, path: str = "") -> tuple[str, str] | None:
    """(dotted path, problem) of the first value in parsed JSON that no database column can hold:
    an integer outside the 32-bit range (PostgreSQL INTEGER: ids, minutes, counts), a string (or key) with a NUL
    character (PostgreSQL refuses those); else None. Both were 500s (issue 7: found by fuzzing)."""
    if isinstance(data, bool):
        return None
    if isinstance(data, int):
        return None if -2**31 <= data < 2**31 else (path or "body", "number out of range")
    if isinstance(data, str):
        return (path or "body", "NUL characters are not allowed") if "\x00" in data else None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        where = f"{path}.{k}" if path else str(k)
        if isinstance(k, str) and "\x00" in k:
            return where, "NUL characters are not allowed"
        found = _unstorable(v, where)
        if found is not None:
            return found
    return None


class SlowBody(ControllerError):
    """The client did not send the body it announced in time (a slow-body attack holds a handler)."""

    status, code = 408, "timeout"


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON object validated by `model` (an empty body is {})."""
    limit = request.app[SETTINGS_KEY].idle_timeout_s if SETTINGS_KEY in request.app else 75.0
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()      # raises HTTPRequestEntityTooLarge past client_max_size
    except TimeoutError:
        raise SlowBody(f"the body did not arrive within {limit:g} s") from None
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Invalid("the body is not valid JSON", field="body") from None
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", field="body")
    bad = _unstorable(data)
    if bad is not None:
        raise Invalid(f"{bad[0]}: {bad[1]}", field=bad[0])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None


def path_int(request: web.Request, name: str) -> int:
    """An integer id of the path (404 when it is not one, or beyond the database's INTEGER).

    The parsed value also fills `{name}` in the target of the route's declared audit row."""
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        raise NotFound(f"no such {name}: {raw!r}") from None
    if not -2**31 <= value < 2**31:     # beyond the INTEGER ids: no such row (was a 500)
        raise NotFound(f"no such {name}: {raw!r}")
    entry = request.get(AUDIT_KEY)
    if entry is not None:
        entry.fields[name] = value
    return value


def q_time(request: web.Request, name: str) -> dt.datetime | None:
    """An ISO-8601 time with a zone from the query, in UTC; None when absent."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name}: expected an ISO-8601 time, got {raw!r}", field=name) from None
    if t.tzinfo is None:
        raise Invalid(f"{name}: must carry a time zone", field=name)
    return t.astimezone(dt.UTC)


def q_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer from the query within [lo, hi]; `default` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Invalid(f"{name}: expected an integer", field=name) from None
    if not lo <= v <= hi:
        raise Invalid(f"{name}: must be between {lo} and {hi}", field=name)
    return v


def q_choice(request: web.Request, name: str, choices: tuple[str, ...] | type[StrEnum]) -> str | None:
    """One of `choices` (a word list or a vocabulary of contract.vocab) from the query; None when absent."""
    allowed = words(choices) if isinstance(choices, type) else choices
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in allowed:
        raise Invalid(f"{name}: expected one of {', '.join(allowed)}", field=name)
    return raw


def now(request: web.Request) -> dt.datetime:
    """The app's clock (a fake one in tests)."""
    return request.app[CLOCK_KEY]()


def who(request: web.Request) -> str:
    """The name of the signed-in user."""
    return request[USER_KEY]["name"]
