"""The web page for people, served by the controller (issue 6).

    GET  /                     the page (controller/web/static/index.html)
    GET  /static/...           its scripts and styles; GET /i18n/{kk,ru,en}.json its strings
    POST /api/v1/login         {"username", "password"} or {"token"} -> the user; sets the session cookie
    POST /api/v1/logout        ends the session (its token is revoked) and clears the cookie
    GET  /api/v1/me            the signed-in user, role and permissions (the page shows only what they allow)
    PUT  /api/v1/users/{name}/password   an administrator sets a password (or: vks-controller user passwd NAME)

The session cookie (`auth.SESSION_COOKIE`) is HttpOnly and SameSite=Strict, and Secure whenever
the page is served over TLS (directly or behind a trusted proxy); the API's auth middleware
accepts it in place of a Bearer token, and for requests that change something it also wants the
`X-Requested-With: vks-web` header (which another site's page cannot send). Every sign-in -
password or API token - opens a page session that expires (`users.SESSION_TTL`, a token's
session with its token at the latest): the API token itself never goes into the cookie, and
logout ends the session. Attempts are counted before anything is checked (controller.web.signin:
per address 429, a name under attack slowed, not locked); every failure is logged and audited
(`login.failed`). Bearer tokens keep working for scripts. No CDN, no build step: plain HTML, JS
modules and CSS.
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from controller import access, auth
from controller.api import API, Audit, Route, audit, body, ok, transaction
from controller.errors import Invalid, Unauthorized
from controller.keys import DB_KEY, SETTINGS_KEY, USER_KEY
from controller.models import In, Role
from controller.store import users as users_repo
from controller.web.signin import GUARD_KEY, SignInGuard, TooManyAttempts

__all__ = ["LIMITER_KEY", "LoginIn", "MeOut", "SignInGuard", "TooManyAttempts", "routes", "setup"]

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


# The sign-in guard (kept under its old name for the tests that reach it).
LIMITER_KEY = GUARD_KEY
log = logging.getLogger(__name__)


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
    institutions: list[str] = Field(description="institutions the post covers")
    regions: list[str] = Field(description="regions the post covers (neither: national)")
    national: bool
    permissions: list[str]
    via: str = Field(description="how this request was authenticated: bearer or cookie")


def me_out(user: dict, scope: access.Scope, via: str) -> dict:
    """The user, their scope, their role's permissions and how they signed in, as MeOut."""
    perms = sorted(auth.ROLE_PERMISSIONS.get(user["role"], ()))
    return MeOut(name=user["name"], role=user["role"], scope=user.get("scope"),
                 institutions=sorted(scope.institutions), regions=sorted(scope.regions), national=scope.national,
                 permissions=perms, via=via).model_dump()


def _set_cookie(request: web.Request, resp: web.StreamResponse, token: str, max_age: int) -> None:
    resp.set_cookie(auth.SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                    secure=request.app[GUARD_KEY].secure(request), max_age=max_age)


async def _failed(request: web.Request, data: LoginIn, address: str, reason: str, delay_s: float) -> None:
    """Log and audit a failed sign-in (the name and address, never the password or token)."""
    name = data.username if data.token is None else None
    log.warning("sign-in failed: %s from %s (%s)", f"user {name!r}" if name else "an API token", address, reason)
    entry = audit(request)
    entry.action = "login.failed"
    async with transaction(request):
        entry.note({"method": "password" if name else "token", "address": address, "reason": reason,
                    "delay_s": delay_s}, who="anonymous", name=name if name else "-")


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/login: sign in and open a page session (its token in the cookie)."""
    # Only JSON: an HTML form of another site cannot send it (no login CSRF).
    if request.content_type != "application/json":
        raise Invalid("send the body as application/json", field="body")
    data = await body(request, LoginIn)
    guard = request.app[GUARD_KEY]
    address = guard.client(request)
    try:
        attempt = await guard.count(request, address, data.username if data.token is None else None)
    except TooManyAttempts:
        log.info("sign-in refused: too many attempts from %s", address)
        raise
    # Checked with no transaction open (scrypt takes a good part of a second), a few at once; the
    # transaction only opens the session and writes the route's audit row (user.login).
    user: dict | None = None
    api_token: dict | None = None
    if data.token is not None:
        async with request.app[DB_KEY].read() as conn:
            found = await users_repo.token_user(conn, data.token, audit(request).at)
        if found is not None:
            user, api_token = found
    elif data.username is not None and data.password is not None:     # LoginIn asks for both
        if attempt.delay_s > 0:
            log.warning("sign-in for %r slowed by %.3g s (%d failures)", data.username, attempt.delay_s,
                        attempt.name_failures)
            await guard.sleep(attempt.delay_s)
        async with guard.checks:
            user = await users_repo.check_password(request.app[DB_KEY], data.username, data.password,
                                                   request.app[SETTINGS_KEY].auth.scrypt_n)
    if user is None:
        await _failed(request, data, address, "wrong password or unknown user" if data.token is None
                      else "unknown, revoked or expired token", attempt.delay_s)
        raise Unauthorized("wrong user name or password" if data.token is None else "unknown or revoked token")
    await guard.succeeded(request, attempt)
    async with transaction(request) as conn:
        token = await users_repo.issue_session(conn, user["id"], audit(request).at, api_token=api_token)
        audit(request).note({"method": "token" if data.token is not None else "password", "address": address,
                             "delay_s": attempt.delay_s}, who=user["name"], name=user["name"])
        scope = await access.load(conn, user["id"])
    resp = ok(me_out(user, scope, "cookie"))
    _set_cookie(request, resp, token, int(users_repo.SESSION_TTL.total_seconds()))
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
    return ok(me_out(request[USER_KEY], access.of(request), via))


class PasswordIn(In):
    """A new password for the web page."""
    password: str = Field(min_length=users_repo.MIN_PASSWORD, max_length=1024)


async def set_password(request: web.Request) -> web.Response:
    """An administrator sets a user's password (their open web sessions end)."""
    data = await body(request, PasswordIn)
    hashed = await users_repo.password_hash(data.password, request.app[SETTINGS_KEY].auth.scrypt_n)  # no tx open
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
          "Sign in with user name and password (or an API token): opens a page session in an HttpOnly, "
          "SameSite=Strict cookie (Secure over TLS); 429 after too many attempts from one address; every "
          "failure is audited as login.failed", body=LoginIn, response=MeOut,
          extra_responses={400: "invalid input", 401: "wrong credentials", 413: "body too large",
                           429: "too many sign-in attempts"}, audit=Audit("user.login", "user:{name}")),
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
    settings = app[SETTINGS_KEY]
    app[GUARD_KEY] = SignInGuard(settings.auth, list(settings.trusted_proxies))
    app.router.add_get("/", index)
    app.router.add_get("/i18n/{lang}.json", catalog)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.middlewares.append(static_headers)
