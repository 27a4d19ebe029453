"""The web page for people, served by the controller (issue 6).

    GET  /                     the page (controller/web/static/index.html)
    GET  /static/...           its scripts and styles; GET /i18n/{kk,ru,en}.json its strings
    POST /api/v1/login         {"username", "password"} or {"token"} -> the user; sets the session cookie
    POST /api/v1/logout        ends the session (its token is revoked) and clears the cookie
    GET  /api/v1/me            the signed-in user, role and permissions (the page shows only what they allow)
    PUT  /api/v1/users/{name}/password   an administrator sets a password (or: vks-controller user passwd NAME)

The session cookie (`auth.SESSION_COOKIE`) is HttpOnly and SameSite=Strict; the
API's auth middleware accepts it in place of a Bearer token, and for requests
that change something it also wants the `X-Requested-With: vks-web` header
(which another site's page cannot send). Password login issues a session
token that expires (`users.SESSION_TTL`); a token login keeps the token the
user already holds in the cookie. Failed logins are limited per address and
per user name (`LoginLimiter`, 429 with Retry-After). Bearer tokens keep
working for scripts. No CDN, no build step: plain HTML, JS modules and CSS.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from controller import auth
from controller.api import API, Audit, Route, audit, body, ok, transaction
from controller.errors import ControllerError, Invalid, Unauthorized
from controller.keys import DB_KEY, USER_KEY
from controller.models import In, Role
from controller.store import users as users_repo

# The page's files travel with the package (package data), found through importlib.resources.
HERE = Path(str(resources.files(__package__)))
STATIC = HERE / "static"
I18N = HERE / "i18n"
LANGS = ("kk", "ru", "en")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class TooManyAttempts(ControllerError):
    """Too many failed logins from this address or for this user name (429)."""
    status, code = 429, "too_many_attempts"


class LoginLimiter:
    """At most `limit` failed logins per key (an address, a user name) within
    `window_s`; pure, with an injectable monotonic clock."""

    def __init__(self, limit: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._fails: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            self._fails.pop(key, None)
        return q

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for all `keys` (0: now)."""
        wait = 0.0
        for k in keys:
            q = self._recent(k)
            if len(q) >= self.limit:
                wait = max(wait, q[0] + self.window_s - self.clock())
        return wait

    def failed(self, *keys: str) -> None:
        t = self.clock()
        for k in keys:
            self._recent(k)
            self._fails.setdefault(k, deque()).append(t)
        if len(self._fails) > 100_000:          # bounded memory under a spray of names
            self._fails.clear()

    def succeeded(self, key: str) -> None:
        self._fails.pop(key, None)


LIMITER_KEY = web.AppKey("login_limiter", LoginLimiter)


class LoginIn(In):
    """A login: user name and password, or an API token."""
    username: str | None = Field(None, min_length=1, max_length=128)
    password: str | None = Field(None, min_length=1, max_length=1024)
    token: str | None = Field(None, min_length=1, max_length=256, description="an API token instead")

    @model_validator(mode="after")
    def _one_way(self):
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("username: give username and password, or token")
        return self


class MeOut(BaseModel):
    """The signed-in user as the page sees them."""
    name: str
    role: Role
    scope: str | None
    permissions: list[str]
    via: str = Field(description="how this request was authenticated: bearer or cookie")


def me_out(user: dict, via: str) -> dict:
    """The user, their role's permissions and how they signed in, as MeOut."""
    perms = sorted(auth.ROLE_PERMISSIONS.get(user["role"], ()))
    return MeOut(name=user["name"], role=user["role"], scope=user.get("scope"), permissions=perms,
                 via=via).model_dump()


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def _set_cookie(request: web.Request, resp: web.StreamResponse, token: str, max_age: int | None) -> None:
    resp.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                    secure=request.secure, max_age=max_age)


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/login: sign in and set the session cookie."""
    # Only JSON: an HTML form of another site cannot send it (no login CSRF).
    if request.content_type != "application/json":
        raise Invalid("send the body as application/json", field="body")
    data = await body(request, LoginIn)
    limiter = request.app[LIMITER_KEY]
    keys = [f"ip:{_client(request)}"] + ([f"user:{data.username.lower()}"] if data.username else [])
    wait = limiter.retry_after(*keys)
    if wait > 0:
        raise TooManyAttempts(f"too many failed logins; try again in {int(wait) + 1} s",
                              detail={"retry_after_s": int(wait) + 1})
    # Checked with no write transaction open (scrypt takes tens of ms); the transaction only opens
    # the session and writes the route's audit row (user.login).
    token: str | None = data.token
    max_age: int | None = None
    user: dict | None = None
    if data.token is not None:
        async with request.app[DB_KEY].read() as conn:
            user = await users_repo.user_for_token(conn, data.token)
    elif data.username is not None and data.password is not None:     # LoginIn asks for both
        user = await users_repo.check_password(request.app[DB_KEY], data.username, data.password)
        max_age = int(users_repo.SESSION_TTL.total_seconds())
    if user is None:
        limiter.failed(*keys)
        raise Unauthorized("wrong user name or password" if data.token is None else "unknown or revoked token")
    async with transaction(request) as conn:
        if token is None:
            token = await users_repo.issue_session(conn, user["id"], audit(request).at)
        audit(request).note({"method": "token" if data.token is not None else "password",
                             "address": _client(request)}, who=user["name"], name=user["name"])
    for k in keys[1:]:
        limiter.succeeded(k)
    resp = ok(me_out(user, "cookie"))
    _set_cookie(request, resp, token, max_age)
    return resp


async def logout(request: web.Request) -> web.Response:
    """POST /api/v1/logout: end the page's session and clear its cookie."""
    token = request.cookies.get(auth.SESSION_COOKIE)
    audit(request).skip()                   # no session: nothing to end, no row
    if token:
        async with transaction(request) as conn:
            user = await users_repo.end_session(conn, token, audit(request).at)
            if user is not None:
                audit(request).note(who=user["name"], name=user["name"])
    resp = web.Response(status=204)
    resp.del_cookie(auth.SESSION_COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.Response:
    """GET /api/v1/me: the signed-in user."""
    via = "bearer" if auth.bearer(request.headers.get("Authorization")) else "cookie"
    return ok(me_out(request[USER_KEY], via))


class PasswordIn(In):
    """A new password for the web page."""
    password: str = Field(min_length=users_repo.MIN_PASSWORD, max_length=1024)


async def set_password(request: web.Request) -> web.Response:
    """An administrator sets a user's password (their open web sessions end)."""
    data = await body(request, PasswordIn)
    hashed = await users_repo.password_hash(data.password)     # before the transaction: nobody waits for it
    async with transaction(request) as conn:          # the route's audit row (user.password) is written in it
        await users_repo.set_password(conn, request.match_info["name"], hashed, audit(request).at)
    return web.Response(status=204)


def _page_file(path: Path, content_type: str | None = None) -> web.FileResponse:
    resp = web.FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
    if content_type:
        resp.content_type = content_type
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    """GET /: the page."""
    return _page_file(STATIC / "index.html", "text/html")


async def catalog(request: web.Request) -> web.StreamResponse:
    """GET /i18n/{lang}.json: the page's strings in one language."""
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise web.HTTPNotFound()
    return _page_file(I18N / f"{lang}.json", "application/json")


@web.middleware
async def static_headers(request: web.Request, handler) -> web.StreamResponse:
    """The page's files are revalidated on every load and never sniffed."""
    resp = await handler(request)
    if request.path.startswith("/static/"):
        resp.headers.setdefault("Cache-Control", "no-cache")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


ROUTES = [
    Route("POST", f"{API}/login", login, None,
          "Sign in with user name and password (or an API token): sets an HttpOnly, SameSite=Strict session "
          "cookie; 429 after repeated failures", body=LoginIn, response=MeOut,
          extra_responses={400: "invalid input", 401: "wrong credentials", 413: "body too large",
                           429: "too many failed logins"}, audit=Audit("user.login", "user:{name}")),
    Route("POST", f"{API}/logout", logout, None, "End the page's session and clear its cookie", status=204,
          audit=Audit("user.logout", "user:{name}")),
    Route("GET", f"{API}/me", me, auth.READ, "The signed-in user, role and permissions", response=MeOut),
    Route("PUT", f"{API}/users/{{name}}/password", set_password, auth.USERS,
          "Set a user's password for the web page (scrypt; their web sessions end)", body=PasswordIn, status=204,
          audit=Audit("user.password", "user:{name}")),
]


def routes() -> list[Route]:
    """The API routes of the page (for api.setup_routes; the on-demand tests' are controller.api.tests)."""
    return ROUTES


def setup(app: web.Application) -> None:
    """The page and its files (not part of the API document)."""
    app[LIMITER_KEY] = LoginLimiter()
    app.router.add_get("/", index)
    app.router.add_get("/i18n/{lang}.json", catalog)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.middlewares.append(static_headers)
