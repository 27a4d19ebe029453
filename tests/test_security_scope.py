"""Who may do what, and where (issue 11): every operation of the served OpenAPI document x role x
national or scoped user x a target in or out of that user's scope.

Each operation is classified once (`classify`): what the route table says (no permission: public;
a permission only admins hold: admin-only, and admins are national; `Route.scoped`: its `{id}` is
in scope or a 404) and, for what it cannot say, the hand table `HAND` (the registry's reads, the
lists, the creations, ids a handler checks). An operation with neither fails the first test, naming
where to add it - a new route cannot slip past the table.

The world: two regions (A: Almaty, B: Kyzylorda), in each a court with a courtroom terminal, a SIZO
with its terminals, a hearing (the court with the SIZO's terminal), an escalation of it, its act
drafted, a suspension of the SIZO (from next year, so nothing is blocked), a test between the two
and a contact; and a mixed hearing M (court B's room, SIZO A's terminal). Users of every role,
national and scoped twice: to region A, and to SIZO A alone (a hearing there is theirs through its
participant; its court's room is not); and a secretary and a coordinator scoped to court B alone
(M is theirs through its court, and the SIZO suspensions its active hearings connect to are seen).
For each cell the expected answer follows from the issue's rules, not from the code: a read in
scope answers 200, a change in scope 2xx - on a fresh target where the change consumes it (`FRESH`)
- unless `explicit` names the other answer and why; a refused change leaves the database as it was
(every table, the audit trail included) and starts no session.

docs/access.md is the same classification as a table; regenerate it with
    .venv/bin/python -m tests.test_security_scope > docs/access.md
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from controller import auth
from controller.api import ROUTES_KEY, Route
from controller.store import agents as agents_store
from controller.store import schema
from controller.store.schema import checks, hearings
from tests.controller_kit import RecordingGateway

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "access.md"
API = "/api/v1"
ROLES = ("viewer", "technician", "secretary", "head_of_office", "coordinator", "admin")
REGENERATE = ".venv/bin/python -m tests.test_security_scope > docs/access.md"

# --- the classification ---------------------------------------------------------------------------

PUBLIC, SIGNED_IN, REGISTRY, HEALTH, ADMIN, BY_ID, LIST, CREATE = (
    "public", "signed-in", "registry", "registry+health", "admin-only", "by id", "list", "create")


@dataclass(frozen=True)
class Access:
    """How an operation is reached: `kind` (above); `names`: what the path's `{id}` names (by id,
    registry), what a list holds, what a creation targets; `queries`: the lists' query strings tried."""

    kind: str
    names: str | None = None
    queries: tuple[str, ...] = ("",)


# What the route table cannot say. A route that declares `scoped=` needs no entry here.
HAND: dict[tuple[str, str], Access] = {
    ("GET", f"{API}/vocabularies"): Access(SIGNED_IN),
    ("GET", f"{API}/reasons"): Access(SIGNED_IN),
    ("GET", f"{API}/me"): Access(SIGNED_IN),
    ("GET", f"{API}/institutions"): Access(REGISTRY),
    ("GET", f"{API}/institutions/{{id}}"): Access(REGISTRY, "institution"),
    ("GET", f"{API}/rooms"): Access(REGISTRY),
    ("GET", f"{API}/rooms/{{id}}"): Access(REGISTRY, "room"),
    ("GET", f"{API}/terminals"): Access(HEALTH),
    ("GET", f"{API}/terminals/{{id}}"): Access(HEALTH, "terminal"),
    ("GET", f"{API}/hearings"): Access(LIST, "hearing"),
    ("GET", f"{API}/exports/hearings"): Access(LIST, "hearing", ("", "format=csv")),
    ("GET", f"{API}/escalations"): Access(LIST, "escalation", ("state=all",)),
    ("GET", f"{API}/suspensions"): Access(LIST, "suspension"),
    ("GET", f"{API}/agreements"): Access(LIST, "agreement", ("", "state=pending")),
    ("POST", f"{API}/hearings"): Access(CREATE, "hearing"),
    ("POST", f"{API}/hearings/import"): Access(CREATE, "hearing import"),
    ("POST", f"{API}/suspensions"): Access(CREATE, "suspension"),
    ("POST", f"{API}/tests"): Access(CREATE, "test"),
    ("GET", f"{API}/tests/{{id}}"): Access(BY_ID, "test"),
    ("GET", f"{API}/terminals/{{id}}/history"): Access(BY_ID, "terminal"),
    ("GET", f"{API}/pairs/{{a}}/{{b}}/history"): Access(BY_ID, "pair"),
}
# Who may, where the permission alone does not say it: the act is signed by the signer roles, and
# an admin enters a signer with no account (controller.acts.signer).
MAY: dict[tuple[str, str], frozenset[str]] = {
    ("POST", f"{API}/hearings/{{id}}/act/signatures"): frozenset({"secretary", "head_of_office", "technician",
                                                                  "admin"}),
}


def derived(route: Route) -> Access | None:
    """What the route table says about the route, or None."""
    if route.permission is None:
        return Access(PUBLIC)
    if not any(auth.allowed(r, route.permission) for r in auth.ROLE_PERMISSIONS if r != "admin"):
        return Access(ADMIN)
    if route.scoped is not None:
        return Access(BY_ID, route.scoped)
    return None


def classify(route: Route) -> Access | None:
    """The route's access class: the route table's word, else the hand table's; None: unclassified."""
    return derived(route) or HAND.get((route.method, route.path))


def may(route: Route, role: str) -> bool:
    """Whether the role may do the operation at all (in scope)."""
    special = MAY.get((route.method, route.path))
    if special is not None:
        return role in special
    return route.permission is None or auth.allowed(role, route.permission)


def operations(doc: dict, routes: list[Route]) -> list[Route]:
    """Every operation of the OpenAPI document, as its route, in the document's order."""
    by_key = {(r.method, r.path): r for r in routes}
    out = []
    for path, methods in doc["paths"].items():
        for method in methods:
            if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                out.append(by_key[(method.upper(), path)])
    return out


# --- the table (docs/access.md) ---------------------------------------------------------------------

def cell(route: Route, a: Access, role: str) -> str:
    """What `role` gets: `in scope / out of scope` for a scoped user; a national one has the left."""
    if a.kind == PUBLIC:
        return "open"
    if not may(route, role):
        return "403"
    if a.kind == ADMIN or role == "admin":
        return "yes"
    return {SIGNED_IN: "yes", REGISTRY: "yes / yes", HEALTH: "yes / no detail", BY_ID: "yes / 404",
            LIST: "listed / absent", CREATE: "yes / refused"}[a.kind]


def describe(a: Access) -> str:
    """The class in words, for the table's second column."""
    if a.kind in (BY_ID, LIST, CREATE):
        return f"{a.kind}: {a.names}"
    if a.kind == HEALTH:
        return "registry (detail: in scope)"
    return a.kind


INTRO = """# Access: who may do what, and where

Generated from the route table by `tests/test_security_scope.py`, which checks every cell against a
running controller; do not edit by hand - regenerate with
`{regenerate}`.

**The role** says what a user may do (`controller/auth.py`); **the scope** says where.

- A **national** user acts everywhere: everything is in their scope. Every admin is national.
- A **scoped** user is given institutions and/or regions (`POST`/`PATCH /api/v1/users/{{name}}`
  with `institutions`, `regions`; `vks-controller user add NAME --role R --institution ID --region
  NAME`). The scope covers the institutions named and every institution of the regions named.

**In scope** means, per resource (`controller/access.py`):

| resource | in scope when |
|---|---|
| hearing (its events, live view, breaks, checks, act) | its court or a participant terminal's institution is covered |
| escalation | its hearing is in scope |
| a terminal's detail: health, online state, last check | its institution is covered (else null or false) |
| test run on demand | the caller or the callee is covered |
| history of a terminal / of a pair | its institution is covered / either terminal's is |
| suspension | of a covered institution, or of a region holding one; suspending a whole region: that region given |
| contacts of an institution | the institution is covered |
| new hearing | its room is covered (creating, moving or importing a hearing into a room out of scope is refused) |
| agreement (the coordinator's list) | the hearing's court is covered |

A hearing's agreement is given where its court lies: a coordinator whose scope holds only a
participant SIZO sees the hearing but gets 403 for `POST /api/v1/hearings/{{id}}/agreement`, and
`GET /api/v1/agreements` lists a hearing only where its court is covered (and, for a coordinator with
a level, only the hearings that need that level's agreement). A suspension of a SIZO that an active
hearing in scope connects to is seen (the hearing's view names it) but lifted only by a coordinator
in whose scope the SIZO is (403 otherwise).

The registry - institutions, rooms, terminals (ids, names, kinds, regions) - is readable by every
signed-in user: a secretary books any SIZO's terminal.

**403 or 404.** 403: the role may not do this anywhere; the answer is the same for every id and
reveals nothing. 404: the thing is out of the user's scope - the answer is exactly the one for an
id that does not exist, so existence is not revealed. Lists, exports and the terminal list leave
out what is out of scope. A creation aimed out of scope is refused (403 or 404) and writes nothing.

`/metrics` has no user (open, or behind its own `metrics.token_file`): it is for the monitoring
system, not for people, and carries no scope.

Cells: *in scope / out of scope* for a scoped user (a national user gets the left side
everywhere); `403`: the role may not; `open`: no sign-in needed. The act is signed by the
head_of_office, secretary and technician from their own accounts; an admin enters a signer who has
no account.
"""


def render(doc: dict, routes: list[Route]) -> str:
    """docs/access.md: the introduction and the table role x operation."""
    lines = [INTRO.format(regenerate=REGENERATE),
             "| operation | reached by | " + " | ".join(ROLES) + " |",
             "|---|---|" + "---|" * len(ROLES)]
    for r in operations(doc, routes):
        a = classify(r)
        if a is None:
            raise SystemExit(f"{r.method} {r.path} is not classified: add it to HAND in {__file__}")
        lines.append(f"| `{r.method} {r.path}` | {describe(a)} | "
                     + " | ".join(cell(r, a, role) for role in ROLES) + " |")
    return "\n".join(lines) + "\n"


# --- the world ------------------------------------------------------------------------------------

A, B = "Almaty", "Kyzylorda"
SCOPES: dict[str, dict[str, list[str]]] = {
    "national": {},
    "region A": {"regions": [A]},
    "SIZO A": {"institutions": ["sizo-almaty-70-1"]},
    "court B": {"institutions": ["kyzylorda-district-2"]},
}
# The scopes every role is given; "court B" only the secretary and the coordinator (court staff).
ONLY = {"court B": ("secretary", "coordinator")}
MISSING = {"hearing": "999999", "escalation": "999999", "suspension": "999999",
           "institution": "no-such-institution", "test": "adhoc-0123456789abcdef",
           "terminal": "no-such-terminal", "pair": "no-such-terminal/no-such-other"}
SOON = dt.timedelta(days=2)
NEXT_YEAR = dt.timedelta(days=365)


class AllOnline(RecordingGateway):
    """Every terminal of the registry is connected (the terminal list shows it online)."""

    def __init__(self) -> None:
        super().__init__()
        self.all: tuple[str, ...] = ()

    def online(self) -> set[str]:
        return set(self.all) - self.offline


@dataclass
class User:
    """A user of the table: role, scope name, token, and the institutions the scope covers."""

    role: str
    scope: str
    token: str
    covered: frozenset[str] | None
    regions: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return f"{self.role}@{self.scope}"

    def sees(self, insts: frozenset[str]) -> bool:
        """Whether something of these institutions is in scope."""
        return self.covered is None or bool(self.covered & insts)

    def holds(self, region: str) -> bool:
        """Whether the user acts on the region as a whole."""
        return self.covered is None or region in self.regions


@dataclass
class World:
    """What the cells act on: per kind, the A and B objects as (id, their institutions)."""

    c: Any
    gw: AllOnline
    region_of: dict[str, str]
    rooms: dict[str, int]
    things: dict[str, dict[str, tuple[str, frozenset[str]]]] = field(default_factory=dict)
    terminal_inst: dict[str, str] = field(default_factory=dict)
    users: list[User] = field(default_factory=list)
    n: int = 0

    def insts_of(self, *terminal_ids: str) -> frozenset[str]:
        """The institutions of these terminals."""
        return frozenset(self.terminal_inst[t] for t in terminal_ids)

    def seen(self, u: User, kind: str, insts: frozenset[str]) -> bool:
        """Whether the user sees the thing: in scope, or (a suspension) of a SIZO that an active
        hearing in scope connects to - that hearing's view names it (controller.access.suspension_view)."""
        if u.sees(insts):
            return True
        hearings_seen = [i for _, i in self.things["hearing"].values() if u.sees(i)]
        return kind == "suspension" and bool(insts & frozenset().union(*hearings_seen) - set(COURT.values()))

    def serial(self) -> int:
        self.n += 1
        return self.n


COURT = {A: "almaty-medeu-district", B: "kyzylorda-district-2"}
SIZO = {A: "sizo-almaty-70-1", B: "sizo-kyzylorda-35-1"}
COURT_T = {A: "court-almaty-1", B: "court-kyzylorda-1"}
SIZO_T = {A: "sizo-almaty-1", B: "sizo-kyzylorda-1"}
TEST_PAIR = {A: ("court-almaty-2", "sizo-almaty-2"), B: ("court-kyzylorda-1", "sizo-kyzylorda-1")}


async def build(c, gw: AllOnline) -> World:
    """The two regions' hearings, escalations, acts, suspensions, tests, contacts, health; the users."""
    from controller.escalation import ESCALATIONS_KEY
    _, insts = await c.call("GET", f"{API}/institutions", expect=200)
    _, terms = await c.call("GET", f"{API}/terminals", expect=200)
    gw.all = tuple(t["id"] for t in terms["items"])
    w = World(c, gw, {i["id"]: i["region"] for i in insts["items"]},
              {r: await c.room_id(COURT[r]) for r in (A, B)},
              terminal_inst={t["id"]: t["institution_id"] for t in terms["items"]})
    t0 = c.clock()
    for tag, r in (("A", A), ("B", B)):
        both = frozenset({COURT[r], SIZO[r]})
        _, h = await c.schedule(start=t0 + SOON, room=(COURT[r], "Зал 1"), participants=[SIZO_T[r]],
                                case=f"2-{tag}/2026", role="admin")
        hid = h["id"]
        eid = await c.app[ESCALATIONS_KEY].open(hearing_id=hid, cause="reconnect_failed", detail={})
        await c.call("POST", f"{API}/hearings/{hid}/act", json={"note": tag}, expect=201)
        _, s = await c.call("POST", f"{API}/suspensions", expect=201, json={
            "institution_id": SIZO[r], "reason": "special_regime", "from_utc": (t0 + NEXT_YEAR).isoformat()})
        caller, callee = TEST_PAIR[r]
        _, tst = await c.call("POST", f"{API}/tests", expect=202, json={"caller": caller, "callee": callee})
        await c.call("POST", f"{API}/institutions/{SIZO[r]}/contacts", expect=201, json={
            "kind": "technician", "name": f"Technician {tag}", "email": f"tech-{tag.lower()}@example.org"})
        w.things.setdefault("hearing", {})[tag] = (str(hid), both)
        w.things.setdefault("agreement", {})[tag] = (str(hid), frozenset({COURT[r]}))   # agreed where the court is
        w.things.setdefault("escalation", {})[tag] = (str(eid), both)
        w.things.setdefault("suspension", {})[tag] = (str(s["id"]), frozenset({SIZO[r]}))
        w.things.setdefault("test", {})[tag] = (tst["id"], w.insts_of(caller, callee))
        w.things.setdefault("institution", {})[tag] = (SIZO[r], frozenset({SIZO[r]}))
        w.things.setdefault("room", {})[tag] = (str(w.rooms[r]), frozenset({COURT[r]}))
        w.things.setdefault("terminal", {})[tag] = (SIZO_T[r], frozenset({SIZO[r]}))
        w.things.setdefault("pair", {})[tag] = (f"{caller}/{callee}", w.insts_of(caller, callee))
    # The mixed hearing: court B's room, SIZO A's terminal - in scope for court B's and SIZO A's people.
    _, h = await c.schedule(start=t0 + SOON + dt.timedelta(hours=3), room=(COURT[B], "Зал 1"), participants=[SIZO_T[A]],
                            case="2-M/2026", role="admin")
    mixed = frozenset({COURT[B], SIZO[A]})
    eid = await c.app[ESCALATIONS_KEY].open(hearing_id=h["id"], cause="reconnect_failed", detail={})
    await c.call("POST", f"{API}/hearings/{h['id']}/act", json={"note": "M"}, expect=201)
    w.things["hearing"]["M"] = (str(h["id"]), mixed)
    w.things["agreement"]["M"] = (str(h["id"]), frozenset({COURT[B]}))
    w.things["escalation"]["M"] = (str(eid), mixed)
    async with c.db.transaction() as conn:
        # Every terminal connected with a health report, each hearing's first check passed: the
        # terminal list has health, online state and a last check to show or to withhold.
        lease = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        for t in gw.all:
            await agents_store.claim_presence(conn, t, "table", lease_until=lease, agent_version="1")
        await agents_store.refresh_presence(conn, "table", lease_until=lease, health={
            t: {"status": "ok", "problems": [], "checked_at": t0.isoformat()} for t in gw.all})
        for (hid,) in (await conn.execute(select(hearings.c.id))).all():
            first = (await conn.execute(select(checks.c.id).where(checks.c.hearing_id == hid)
                                        .order_by(checks.c.id).limit(1))).scalar()
            if first is not None:
                await conn.execute(checks.update().where(checks.c.id == first).values(
                    status="passed", verdict="good", finished_at=t0))
    for role in ROLES:
        for scope, given in SCOPES.items():
            if (role == "admin" and given) or role not in ONLY.get(scope, ROLES):
                continue                    # an admin is national
            level = "regional" if role == "coordinator" and given.get("regions") else None
            _, u = await c.call("POST", f"{API}/users", expect=201, json={
                "name": f"{role}@{scope.replace(' ', '-')}", "role": role, "scope": level, **given})
            covered = None if not given else frozenset(
                i for i, reg in w.region_of.items() if reg in given.get("regions", [])
            ) | frozenset(given.get("institutions", []))
            w.users.append(User(role, scope, u["token"], covered, frozenset(given.get("regions", []))))
    for u in w.users:               # its first use records the token's last use: not inside a cell
        await c.call("GET", f"{API}/me", token=u.token, expect=200)
    return w


# --- the cells ------------------------------------------------------------------------------------

# A terminal's detail beyond the registry (ids, names, kinds, regions): its health, whether it is
# connected, its last check (which names a hearing and its peer) - shown for terminals in scope only.
DETAIL = ("online", "health", "last_check")

# Bodies that would succeed but for the scope (a change refused for its body proves nothing).
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", f"{API}/hearings/{{id}}"): {"duration_min": 75},
    ("POST", f"{API}/hearings/{{id}}/agreement"): {"note": "agreed"},
    ("POST", f"{API}/hearings/{{id}}/checks"): {"kind": "test"},
    ("POST", f"{API}/hearings/{{id}}/act"): {"note": "redrafted"},
    ("POST", f"{API}/hearings/{{id}}/self-checks"): {"name": "Aigerim Nurlanova", "mode": "mobile"},
    ("POST", f"{API}/hearings/{{id}}/break-decision"): {"decision": "declared"},
    ("PUT", f"{API}/hearings/{{id}}/modes"): {"items": [{"name": "Serik Akhmetov", "kind": "lawyer",
                                                          "mode": "in_person"}]},
}


@dataclass(frozen=True)
class RawFile:
    """A request body that is a file of this content type (not JSON)."""

    content_type: str
    text: str


NO_ACCOUNT = {"no_account": True, "role": "technician", "name": "Serik Akhmetov"}


def body_for(route: Route, user: User | None) -> Any:
    """The request body of the operation (none for GET and DELETE)."""
    if route.path.endswith("/act/signatures"):
        return NO_ACCOUNT if user is not None and user.role == "admin" else {}
    return BODIES.get((route.method, route.path), None if route.method in ("GET", "DELETE") else {})


def concrete(path: str, ident: str) -> str:
    """The path with its parameters filled in: each with `ident`, or - a path of two parameters (a
    pair) and an ident "a/b" - one part each."""
    params = re.findall(r"\{[^}]+\}", path)
    parts = ident.split("/")
    if len(params) > 1 and len(parts) == len(params):
        for p, v in zip(params, parts, strict=True):
            path = path.replace(p, v, 1)
        return path
    return re.sub(r"\{[^}]+\}", ident, path)


def as_missing(body: Any, ident: str, missing: str) -> Any:
    """The answer about `ident` as it would read about `missing` (the id in the message swapped)."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return body
    return {**body, "message": re.sub(rf"(?<![\w-]){re.escape(ident)}(?![\w-])", missing, body["message"])}


def listed_ids(body: Any) -> set[str]:
    """The ids in a list's answer: JSON items (or an export's hearings), or a CSV's first column."""
    if isinstance(body, str):
        return {row[0] for row in list(csv.reader(io.StringIO(body)))[1:] if row}
    rows = body.get("items", body.get("hearings", []))
    return {str(r["id"]) for r in rows}


def _everything() -> str:
    """One SQLite statement that reads every row of every table (a round trip per table, hundreds of
    times, would make the table slow)."""
    parts = []
    for table in schema.metadata.sorted_tables:
        row = " || ',' || ".join(f'quote("{c.name}")' for c in table.columns)
        parts.append(f"SELECT '{table.name}', (SELECT group_concat(r, ';') FROM "
                     f'(SELECT {row} AS r FROM "{table.name}" ORDER BY 1))')
    return " UNION ALL ".join(parts)


EVERYTHING = _everything()


async def digest(c) -> str:
    """Every row of every table: a refused change leaves it as it was."""
    async with c.db.read() as conn:
        rows = (await conn.execute(text(EVERYTHING))).all()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


# A change that consumes its target (a hearing cancelled, started or ended, an agreement given, an
# escalation closed, a signature given, a suspension lifted) gets a fresh one per (user, place), so
# that every in-scope cell must answer 2xx: what is made fresh, per operation.
FRESH: dict[tuple[str, str], str] = {
    ("DELETE", f"{API}/hearings/{{id}}"): "hearing",
    ("POST", f"{API}/hearings/{{id}}/agreement"): "hearing",
    ("POST", f"{API}/hearings/{{id}}/start"): "hearing",
    ("POST", f"{API}/hearings/{{id}}/end"): "started",
    ("POST", f"{API}/escalations/{{id}}/cannot-fix"): "escalation",
    ("POST", f"{API}/escalations/{{id}}/resolve"): "escalation",
    ("POST", f"{API}/hearings/{{id}}/act/signatures"): "act",
    ("DELETE", f"{API}/suspensions/{{id}}"): "suspension",
}
# Where a place is: (the court's region, the participant SIZO's region); M is the mixed hearing.
PLACES = {"A": (A, A), "B": (B, B), "M": (B, A)}


def explicit(route: Route, u: User, tag: str, insts: frozenset[str]) -> tuple[int, str] | None:
    """An in-scope cell whose true answer is not 2xx: (status, why); None: 2xx (200 for a read)."""
    key = (route.method, route.path)
    if key == ("DELETE", f"{API}/suspensions/{{id}}") and not u.sees(insts):
        return 403, "seen through an active hearing in scope that connects to the SIZO; lifted only where one acts"
    if key == ("POST", f"{API}/hearings/{{id}}/agreement") and not u.sees(frozenset({COURT[PLACES[tag][0]]})):
        return 403, "the agreement is given where the court lies; this scope holds only the participant SIZO"
    if key == ("POST", f"{API}/hearings/{{id}}/resume"):
        return 409, "not ready to resume: live monitoring is off in this world, so no break waits to be resumed"
    if key == ("POST", f"{API}/hearings/{{id}}/break-decision"):
        return 409, "no break waits for the judge's decision: live monitoring is off in this world"
    return None


class Cells:
    """Runs the cells of the table and keeps the ones that do not hold."""

    def __init__(self, w: World):
        self.w = w
        self.failed: list[str] = []
        self.count = 0
        self.known: str | None = None      # the digest as of the last request, when that wrote nothing

    def expect(self, ok: bool, route: Route, user: User | None, where: str, got: Any, expected: str) -> None:
        self.count += 1
        if not ok:
            who = user.name if user is not None else "no token"
            self.failed.append(f"{route.method} {route.path} | {who} | {where} | got {got} | expected {expected}")

    async def call(self, route: Route, user: User | None, ident: str = "1", query: str = "",
                   body: Any = "default") -> tuple[int, Any]:
        path = concrete(route.path, ident) + (f"?{query}" if query else "")
        json = body_for(route, user) if body == "default" else body
        if route.method != "GET":
            self.known = None
        headers = {"Authorization": f"Bearer {user.token}"} if user is not None else {}
        if isinstance(json, RawFile):           # a file (POST /hearings/import), not a JSON object
            resp = await self.w.c.client.request(route.method, path, data=json.text.encode(),
                                                 headers={**headers, "Content-Type": json.content_type})
        else:
            resp = await self.w.c.client.request(route.method, path, json=json, headers=headers)
        ctype = resp.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            return resp.status, await resp.json()
        if ctype.startswith("text/"):
            return resp.status, await resp.text()
        return resp.status, await resp.read()

    async def refused(self, route: Route, user: User, where: str, expected: str, ident: str = "1",
                      body: Any = "default", allowed: tuple[int, ...] = (403,)) -> tuple[int, Any]:
        """A change (or read) that must be refused, and for a change: nothing written, no session."""
        change = route.method != "GET"
        before = (self.known or await digest(self.w.c)) if change else None
        started = len(self.w.gw.started)
        status, out = await self.call(route, user, ident, body=body)
        self.expect(status in allowed, route, user, where, (status, short(out)), expected)
        if change:
            after = await digest(self.w.c)
            self.expect(after == before and len(self.w.gw.started) == started, route, user, where,
                        "the database changed or a session started", "nothing written")
            self.known = after
        return status, out

    async def let_through(self, route: Route, user: User, where: str, ident: str = "1", query: str = "",
                          body: Any = "default") -> tuple[int, Any]:
        """An operation the user may do here: a read answers 200, a change is not refused for who or where."""
        status, out = await self.call(route, user, ident, query, body)
        if route.method == "GET":
            self.expect(status == 200, route, user, where, (status, short(out)), "200")
        else:
            self.expect(200 <= status < 300, route, user, where, (status, short(out)), "2xx")
        return status, out

    # --- per class

    async def public(self, route: Route) -> None:
        status, out = await self.call(route, None)
        self.expect(status not in (401, 403), route, None, "-", (status, short(out)), "open without a token")

    async def signed_in(self, route: Route, a: Access) -> None:
        idents = [("-", "1")] if a.names is None else [(tag, i) for tag, (i, _) in self.w.things[a.names].items()]
        for u in self.w.users:
            for tag, ident in idents:
                status, out = await self.let_through(route, u, tag, ident)
                if a.kind == HEALTH and status == 200:
                    self.health(route, u, tag, out["items"] if a.names is None else [out])

    def health(self, route: Route, u: User, tag: str, terminals: list[dict]) -> None:
        """A terminal in scope shows its detail; one out of scope shows none of it (null or false)."""
        checked = set(COURT_T.values()) | set(SIZO_T.values())      # the hearings' terminals (build)
        hidden = {t["id"]: [k for k in DETAIL if not t.get(k) and (k != "last_check" or t["id"] in checked)]
                  for t in terminals if u.sees(frozenset({t["institution_id"]}))}
        hidden = {t: keys for t, keys in hidden.items() if keys}
        self.expect(not hidden, route, u, f"{tag} in", f"missing: {hidden}", f"{', '.join(DETAIL)} shown")
        shown = {t["id"]: [k for k in DETAIL if t.get(k)] for t in terminals
                 if not u.sees(frozenset({t["institution_id"]}))}
        shown = {t: keys for t, keys in shown.items() if keys}
        self.expect(not shown, route, u, f"{tag} out", f"shown: {shown}", f"no {', '.join(DETAIL)}")

    async def admin_only(self, route: Route) -> None:
        """Admins only (and they are national): an admin is let through (to the handler's 400 or 404
        about the probe id, nothing is destroyed); everyone else gets 403."""
        for u in self.w.users:
            if u.role == "admin":
                status, out = await self.call(route, u)
                self.expect(status < 500 and status not in (401, 403), route, u, "-", (status, short(out)),
                            "let through")
            else:
                await self.refused(route, u, "-", "403 (admin only)")

    async def by_id(self, route: Route, a: Access) -> None:
        things = self.w.things[a.names or ""]
        missing = MISSING[a.names or ""]
        later = []
        misses: dict[str, tuple[int, Any]] = {}
        for u in self.w.users:
            for tag, (ident, insts) in things.items():
                if self.w.seen(u, a.names or "", insts):
                    later.append((u, tag, ident, insts))
                    continue
                if u.name not in misses:    # the same for every tag: asked once per user
                    misses[u.name] = await self.refused(route, u, "missing", "403/404", missing, allowed=(403, 404))
                miss = misses[u.name]
                if may(route, u.role):
                    _, out = await self.refused(route, u, f"{tag} out", "404 as for a missing id", ident,
                                                allowed=(404,))
                else:
                    _, out = await self.refused(route, u, f"{tag} out", "403/404 as for a missing id", ident,
                                                allowed=(403, 404))
                self.expect(as_missing(out, ident, missing) == miss[1], route, u, f"{tag} out",
                            short(out), f"the answer for a missing id: {short(miss[1])}")
        for u, tag, ident, insts in later:
            special = explicit(route, u, tag, insts) if may(route, u.role) else None
            if not may(route, u.role):
                await self.refused(route, u, f"{tag} in", "403 (role)", ident)
            elif special is not None:
                await self.refused(route, u, f"{tag} in", f"{special[0]}: {special[1]}", ident,
                                   allowed=(special[0],))
            elif (route.method, route.path) in FRESH:
                ident = await self.fresh(FRESH[(route.method, route.path)], tag)
                status, _ = await self.let_through(route, u, f"{tag} in (fresh {ident})", ident)
                if route.path.endswith("/start") and status == 200:      # its terminals free again
                    await self.w.c.call("POST", f"{API}/hearings/{ident}/end", role="admin", expect=200)
            else:
                await self.let_through(route, u, f"{tag} in", ident)

    async def fresh(self, what: str, tag: str) -> str:
        """A new target of the place `tag` (hearing, started hearing, escalation, act, suspension)."""
        from controller.escalation import ESCALATIONS_KEY
        c, n = self.w.c, self.w.serial()
        self.known = None
        court, sizo = PLACES[tag]
        if what == "suspension":
            _, s = await c.call("POST", f"{API}/suspensions", expect=201, json={
                "institution_id": SIZO[sizo], "reason": "special_regime",
                "from_utc": (c.clock() + NEXT_YEAR + dt.timedelta(days=n)).isoformat()})
            return str(s["id"])
        start = c.clock() + SOON + dt.timedelta(days=30, hours=2 * n)
        _, h = await c.schedule(start=start, room=(COURT[court], "Зал 1"), participants=[SIZO_T[sizo]],
                                case=f"3-{n}/2027", duration_min=30, role="admin")
        hid = h["id"]
        if what == "escalation":
            return str(await c.app[ESCALATIONS_KEY].open(hearing_id=hid, cause="reconnect_failed", detail={}))
        if what == "act":
            await c.call("POST", f"{API}/hearings/{hid}/act", json={"note": "fresh"}, expect=201)
        elif what == "started":
            await c.call("POST", f"{API}/hearings/{hid}/start", role="admin", expect=200)
        return str(hid)

    async def listing(self, route: Route, a: Access) -> None:
        things = self.w.things[a.names or ""]
        for u in self.w.users:
            for query in a.queries:
                where = query or "-"
                if not may(route, u.role):          # a list of one role's (e.g. the coordinator's agreements)
                    status, out = await self.call(route, u, "1", query, None)
                    self.expect(status == 403, route, u, where, (status, short(out)), "403")
                    continue
                status, out = await self.let_through(route, u, where, query=query)
                if status != 200:
                    continue
                got = listed_ids(out)
                for tag, (ident, insts) in things.items():
                    if self.w.seen(u, a.names or "", insts):
                        self.expect(ident in got, route, u, f"{where} {tag} in", sorted(got), f"{ident} listed")
                    else:
                        self.expect(ident not in got, route, u, f"{where} {tag} out", sorted(got), f"{ident} absent")

    def targets(self, kind: str, u: User) -> list[tuple[str, bool, Any]]:
        """(name, in the user's scope, body) of each creation aimed at region A and B."""
        w, t0 = self.w, self.w.c.clock()
        out = []
        for tag, r in (("A", A), ("B", B)):
            n = w.serial()
            if kind == "hearing":
                start = t0 + SOON + dt.timedelta(days=1, hours=2 * n)
                out.append((f"{tag} room", u.sees(frozenset({COURT[r]})), {
                    "case_number": f"2-{n}/2027", "room_id": w.rooms[r], "start_utc": start.isoformat(),
                    "duration_min": 30, "participants": [{"terminal_id": SIZO_T[r]}]}))
            elif kind == "hearing import":       # one CSV row, its start written with its offset
                start = t0 + SOON + dt.timedelta(days=1, hours=2 * n)
                out.append((f"{tag} room", u.sees(frozenset({COURT[r]})), RawFile(
                    "text/csv", "case_number,room_id,start,duration_min,participants\n"
                    f"2-{n}/2027,{w.rooms[r]},{start.isoformat()},30,{SIZO_T[r]}\n")))
            elif kind == "suspension":
                since = {"reason": "special_regime", "from_utc": (t0 + NEXT_YEAR).isoformat()}
                out.append((f"{tag} SIZO", u.sees(frozenset({SIZO[r]})), {"institution_id": SIZO[r], **since}))
                out.append((f"{tag} region", u.holds(r), {"region": r, **since}))
            else:
                caller, callee = TEST_PAIR[r]
                out.append((f"{tag} pair", u.sees(w.insts_of(caller, callee)), {"caller": caller, "callee": callee}))
        return out

    async def creation(self, route: Route, a: Access) -> None:
        later = []
        for u in self.w.users:
            for name, mine, body in self.targets(a.names or "", u):
                if not may(route, u.role):
                    await self.refused(route, u, name, "403 (role)", body=body)
                elif not mine:
                    await self.refused(route, u, f"{name} out", "403/404, nothing written", body=body,
                                       allowed=(403, 404))
                else:
                    later.append((u, name, body))
        for u, name, body in later:
            status, out = await self.call(route, u, body=body)
            self.expect(status in (201, 202), route, u, f"{name} in", (status, short(out)), "created")


def short(body: Any) -> Any:
    """An answer cut to a readable size for a failure's line."""
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= 160 else text[:157] + "..."


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture
async def ctl(fake_clock, tmp_path):
    from tests.controller_kit import Controller
    gw = AllOnline()
    # No live monitoring: nothing writes in the background while a refused change is compared.
    async with Controller(f"sqlite:///{tmp_path / 'c.sqlite'}", fake_clock, gateway=gw,
                          live={"enabled": False}) as c:
        yield c


async def served(c) -> tuple[dict, list[Route]]:
    """The OpenAPI document the controller serves and its route table."""
    _, doc = await c.call("GET", f"{API}/openapi.json", role=None, expect=200)
    return doc, c.app[ROUTES_KEY]


async def test_every_operation_of_the_openapi_document_is_classified(ctl):
    doc, routes = await served(ctl)
    ops = operations(doc, routes)
    missing = [f"{r.method} {r.path}" for r in ops if classify(r) is None]
    assert not missing, (f"not in the access table: {missing}. Declare scoped= on the route (what its {{id}} "
                         f"names), or add the operation to HAND in {__file__} (registry read, list, creation), "
                         f"then regenerate docs/access.md: {REGENERATE}")
    assert len(ops) > 50


async def test_the_hand_table_holds_only_what_the_route_table_cannot_say(ctl):
    _, routes = await served(ctl)
    known = {(r.method, r.path): r for r in routes}
    stale = [k for k in HAND if k not in known]
    assert not stale, f"HAND names operations that are not served: {stale}"
    conflict = {k: (derived(known[k]), a) for k, a in HAND.items() if derived(known[k]) not in (None, a)}
    assert not conflict, f"the route table and HAND disagree (route table first): {conflict}"
    redundant = [k for k, a in HAND.items() if derived(known[k]) == a]
    assert not redundant, f"the route table says it now; remove from HAND: {redundant}"


async def test_docs_access_md_is_the_generated_table(ctl):
    doc, routes = await served(ctl)
    assert DOC.read_text(encoding="utf-8") == render(doc, routes), f"docs/access.md is stale: {REGENERATE}"


async def test_every_operation_x_role_x_scope_in_and_out(ctl):
    """The table itself: every cell, collected, so that one run names every cell that does not hold."""
    w = await build(ctl, ctl.gw)
    doc, routes = await served(ctl)
    cells = Cells(w)
    # Deletions last: a hearing cancelled early would answer every later change with 409.
    for r in sorted(operations(doc, routes), key=lambda r: r.method == "DELETE"):
        a = classify(r)
        if a is None:               # the first test says where to classify it
            cells.failed.append(f"{r.method} {r.path} | not classified")
        elif a.kind == PUBLIC:
            await cells.public(r)
        elif a.kind in (SIGNED_IN, REGISTRY, HEALTH):
            await cells.signed_in(r, a)
        elif a.kind == ADMIN:
            await cells.admin_only(r)
        elif a.kind == BY_ID:
            await cells.by_id(r, a)
        elif a.kind == LIST:
            await cells.listing(r, a)
        else:
            await cells.creation(r, a)
    assert cells.count > 500
    assert not cells.failed, f"{len(cells.failed)} of {cells.count} cells do not hold:\n" + "\n".join(cells.failed)


async def test_moving_a_hearing_into_a_room_out_of_scope_is_refused(ctl):
    """A hearing in scope through its SIZO participant may be changed by the SIZO's secretary, but not
    moved into a room of the court, which is out of their scope; the region's secretary may move it.
    Into another court's room no one moves it (400). Refused: nothing written."""
    w = await build(ctl, ctl.gw)
    hid, _ = w.things["hearing"]["A"]
    route = next(r for r in ctl.app[ROUTES_KEY] if (r.method, r.path) == ("PATCH", f"{API}/hearings/{{id}}"))
    room2 = await ctl.room_id(COURT[A], "Зал 2")
    cells = Cells(w)
    for u in w.users:
        if u.role not in ("secretary", "head_of_office") or u.scope == "national":
            continue
        await cells.refused(route, u, "-> region B's room", "400/403/404, nothing written", hid,
                            body={"room_id": w.rooms[B]}, allowed=(400, 403, 404))
        if u.sees(frozenset({COURT[A]})):
            await cells.let_through(route, u, "-> room 2 in scope", hid, body={"room_id": room2})
            await cells.let_through(route, u, "-> room 1 back", hid, body={"room_id": w.rooms[A]})
        else:
            await cells.refused(route, u, "-> room 2 out of scope", "403/404, nothing written", hid,
                                body={"room_id": room2}, allowed=(403, 404))
    assert cells.count == 20 and not cells.failed, "\n".join(cells.failed)


async def test_a_check_of_a_terminal_live_in_another_hearing_is_a_conflict(ctl):
    """The mixed hearing's check needs SIZO A's terminal; while hearing A (the same terminal) is live,
    the check is 409 for everyone who may run it there (technicians national, of region A and of
    SIZO A - theirs through the participant -, the admin) and writes nothing; once hearing A has
    ended it runs (202)."""
    w = await build(ctl, ctl.gw)
    hid_a, _ = w.things["hearing"]["A"]
    mixed, _ = w.things["hearing"]["M"]
    route = next(r for r in ctl.app[ROUTES_KEY] if (r.method, r.path) == ("POST", f"{API}/hearings/{{id}}/checks"))
    await ctl.call("POST", f"{API}/hearings/{hid_a}/start", role="admin", expect=200)
    cells = Cells(w)
    runners = [u for u in w.users if may(route, u.role) and u.sees(frozenset({COURT[B], SIZO[A]}))]
    assert {u.scope for u in runners} >= {"national", "region A", "SIZO A"}
    for u in runners:
        await cells.refused(route, u, "M, SIZO A's terminal live in A", "409 (terminal in another live hearing)",
                            mixed, allowed=(409,))
    await ctl.call("POST", f"{API}/hearings/{hid_a}/end", role="admin", expect=200)
    for u in runners:
        status, out = await cells.call(route, u, mixed)
        cells.expect(status == 202, route, u, "M, A ended", (status, short(out)), "202")
    assert not cells.failed, "\n".join(cells.failed)


def main() -> None:
    """Print docs/access.md (the route table and the classification; no database is opened)."""
    import tempfile

    from controller import openapi
    from controller.app import create_app
    from controller.settings import ControllerSettings
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ControllerSettings(db=f"sqlite:///{tmp}/unused.sqlite"), clock=lambda: dt.datetime.now(dt.UTC),
                         run_scheduler=False, agents=False)
        routes = app[ROUTES_KEY]
        print(render(openapi.document(routes), routes), end="")


if __name__ == "__main__":
    main()
