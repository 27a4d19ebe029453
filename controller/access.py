"""Where a user acts: the scope of their post (issue 11).

A user is national, or scoped to institutions and/or regions (`user_institutions`, `user_regions`).
The scope is resolved once per request into the set of institution ids it covers (the named
institutions and every institution of the named regions), so a change of scope or of the registry
takes effect at the next request.

What a scoped user reaches (the registry itself - institutions, rooms, terminals - stays readable by
every signed-in user: a secretary books any SIZO's terminal):
- a hearing whose court, or any participant terminal's institution, is covered; with it its events,
  live view, breaks, act, checks and escalations;
- a terminal's health detail, its history and a test when the terminal (the caller or the callee)
  is covered; a pair's history when either terminal is;
- a suspension (rule 24) of a covered institution or of a region with one - and one that blocks an
  active hearing in scope (of its SIZO, say); coordinators create and lift them where they act.
Anything else is absent from their lists and a 404 when asked for by id: existence is not revealed.
The role says what a user may do (controller.auth), the scope where.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import ColumnElement, delete, exists, false, insert, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import ACTIVE_HEARING_STATUSES, Coordinator, InstitutionKind, Role
from controller.errors import Invalid, NotFound
from controller.store.schema import (
    escalations,
    hearing_participants,
    hearings,
    institutions,
    suspensions,
    user_institutions,
    user_regions,
)


@dataclass(frozen=True)
class Scope:
    """A user's scope: what was given (institutions, regions) and what it covers (institution ids,
    and the regions those lie in). `covered is None`: national."""

    institutions: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    covered: frozenset[str] | None = None
    covered_regions: frozenset[str] = frozenset()

    @property
    def national(self) -> bool:
        """Whether the user acts everywhere."""
        return self.covered is None

    def covers(self, institution_id: str | None) -> bool:
        """Whether the institution is in scope."""
        return self.covered is None or (institution_id is not None and institution_id in self.covered)

    def covers_any(self, institution_ids: Iterable[str | None]) -> bool:
        """Whether any of the institutions is in scope."""
        return self.covered is None or any(i in self.covered for i in institution_ids if i is not None)

    def holds_region(self, region: str | None) -> bool:
        """Whether the user acts on the region as a whole (a region-wide suspension, rule 24): only
        a national user or one given that region."""
        return self.covered is None or (region is not None and region in self.regions)

    def sees_region(self, region: str | None) -> bool:
        """Whether something concerning the whole region concerns this user: a region given, or one
        with an institution in scope."""
        return self.covered is None or (region is not None and region in self.covered_regions)

    def institution_clause(self, column) -> ColumnElement[bool]:
        """SQL: `column` (an institution id) is in scope."""
        if self.covered is None:
            return true()
        if not self.covered:
            return false()
        return column.in_(sorted(self.covered))

    def hearing_clause(self) -> ColumnElement[bool]:
        """SQL on `hearings`: the hearing's court or any participant's institution is in scope."""
        if self.covered is None:
            return true()
        return or_(self.institution_clause(hearings.c.court_id),
                   exists().where(hearing_participants.c.hearing_id == hearings.c.id,
                                  self.institution_clause(hearing_participants.c.institution_id)))


NATIONAL = Scope()

# The scope of the request's user (set by controller.api.routing with the user).
SCOPE_KEY = web.RequestKey("vks_scope", Scope)


def of(request: web.Request) -> Scope:
    """The scope of the request's user (national when the route needs no user)."""
    return request.get(SCOPE_KEY, NATIONAL)


async def load(conn: AsyncConnection, user_id: int) -> Scope:
    """The user's scope, resolved against the registry as it is now."""
    given_i = frozenset(r for (r,) in await conn.execute(
        select(user_institutions.c.institution_id).where(user_institutions.c.user_id == user_id)))
    given_r = frozenset(r for (r,) in await conn.execute(
        select(user_regions.c.region).where(user_regions.c.user_id == user_id)))
    if not given_i and not given_r:
        return NATIONAL
    cond = []
    if given_i:
        cond.append(institutions.c.id.in_(sorted(given_i)))
    if given_r:
        cond.append(institutions.c.region.in_(sorted(given_r)))
    rows = (await conn.execute(select(institutions.c.id, institutions.c.region).where(or_(*cond)))).all()
    return Scope(institutions=given_i, regions=given_r, covered=frozenset(r.id for r in rows),
                 covered_regions=given_r | frozenset(r.region for r in rows))


async def given(conn: AsyncConnection, user_ids: Iterable[int]) -> dict[int, tuple[list[str], list[str]]]:
    """{user id: (institutions, regions) as given, sorted} for the listing of users."""
    ids = list(user_ids)
    out: dict[int, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    if not ids:
        return out
    for uid, inst in await conn.execute(select(user_institutions.c.user_id, user_institutions.c.institution_id)
                                        .where(user_institutions.c.user_id.in_(ids))
                                        .order_by(user_institutions.c.institution_id)):
        out[uid][0].append(inst)
    for uid, region in await conn.execute(select(user_regions.c.user_id, user_regions.c.region)
                                          .where(user_regions.c.user_id.in_(ids)).order_by(user_regions.c.region)):
        out[uid][1].append(region)
    return out


async def set_scope(conn: AsyncConnection, user_id: int, institution_ids: Iterable[str],
                    regions: Iterable[str]) -> None:
    """Replace the user's scope (none of either: national). Every institution must exist and every
    region must hold an institution (a typo would otherwise scope the user to nothing)."""
    inst = sorted(set(institution_ids))
    regs = sorted(set(regions))
    if inst:
        known = {r for (r,) in await conn.execute(select(institutions.c.id).where(institutions.c.id.in_(inst)))}
        missing = [i for i in inst if i not in known]
        if missing:
            raise Invalid(f"no institution {', '.join(map(repr, missing))}", field="institutions")
    if regs:
        known = {r for (r,) in await conn.execute(select(institutions.c.region).where(institutions.c.region.in_(regs))
                                                  .distinct())}
        missing = [r for r in regs if r not in known]
        if missing:
            raise Invalid(f"no institution lies in region {', '.join(map(repr, missing))}", field="regions")
    await conn.execute(delete(user_institutions).where(user_institutions.c.user_id == user_id))
    await conn.execute(delete(user_regions).where(user_regions.c.user_id == user_id))
    if inst:
        await conn.execute(insert(user_institutions), [{"user_id": user_id, "institution_id": i} for i in inst])
    if regs:
        await conn.execute(insert(user_regions), [{"user_id": user_id, "region": r} for r in regs])


def check_combination(role: str, coordinator_scope: str | None, institutions: Iterable[str],
                      regions: Iterable[str]) -> None:
    """Invalid unless role, coordinator level and scope go together: an admin is national (a scoped
    admin could make a national one); a coordinator at the regional level is given a region."""
    scoped = bool(list(institutions)) or bool(list(regions))
    if coordinator_scope is not None and role != Role.COORDINATOR:
        raise Invalid("scope (regional or department) is a coordinator's level; this user is a " + role,
                      field="scope")
    if role == Role.ADMIN and scoped:
        raise Invalid("an admin is national: give no institutions or regions", field="institutions")
    if coordinator_scope == Coordinator.REGIONAL and not list(regions):
        raise Invalid("a regional coordinator (scope regional) needs at least one region", field="regions")


async def require_regions_held(conn: AsyncConnection) -> None:
    """Conflict (naming the users) when a region given to an active user no longer holds any
    institution - after a change of an institution's region, which would otherwise leave that user
    silently scoped to nothing. (An institution moved INTO a region widens that region's users: that
    is what a region scope means.)"""
    from controller.errors import Conflict
    from controller.store.schema import users
    q = (select(user_regions.c.region, users.c.name).join(users, users.c.id == user_regions.c.user_id)
         .where(users.c.disabled_at.is_(None),
                ~exists().where(institutions.c.region == user_regions.c.region))
         .order_by(user_regions.c.region, users.c.name))
    rows = (await conn.execute(q)).all()
    if rows:
        held = ", ".join(f"{r.region!r} ({r.name})" for r in rows)
        raise Conflict(f"no institution would be left in region {held} given to these users: change their "
                       "regions first (PATCH /api/v1/users/{name})", field="region")


async def hearing_in_scope(conn: AsyncConnection, scope: Scope, hearing_id: int) -> bool:
    """Whether the hearing exists and is in scope."""
    q = select(hearings.c.id).where(hearings.c.id == hearing_id, scope.hearing_clause())
    return (await conn.execute(q)).first() is not None


async def require_hearing(conn: AsyncConnection, scope: Scope, hearing_id: int) -> None:
    """NotFound - the same answer as for a hearing that does not exist - unless it is in scope."""
    if not scope.national and not await hearing_in_scope(conn, scope, hearing_id):
        raise NotFound(f"no hearing {hearing_id}")


# What the `{id}` of a route's path names, for `Route.scoped`: the route answers 404 unless it is
# in the user's scope, checked before the handler runs (controller.api.routing).
HEARING, ESCALATION, SUSPENSION, INSTITUTION = "hearing", "escalation", "suspension", "institution"
KINDS = (HEARING, ESCALATION, SUSPENSION, INSTITUTION)


async def require(conn: AsyncConnection, scope: Scope, kind: str, ident: str) -> None:
    """NotFound - as for what does not exist - unless the `kind` named `ident` is in scope."""
    if scope.national:
        return
    if kind == INSTITUTION:
        require_institution(scope, ident, f"institution {ident!r}")
        return
    try:
        num = int(ident)
    except ValueError:
        raise NotFound(f"no {kind} {ident!r}") from None
    if kind == HEARING:
        await require_hearing(conn, scope, num)
    elif kind == ESCALATION:
        hid = (await conn.execute(select(escalations.c.hearing_id).where(escalations.c.id == num))).scalar()
        if hid is None or not await hearing_in_scope(conn, scope, hid):
            raise NotFound(f"no escalation {num}")
    elif kind == SUSPENSION:
        row = (await conn.execute(select(suspensions.c.institution_id, suspensions.c.region)
                                  .where(suspensions.c.id == num))).first()
        seen = await suspension_view(conn, scope)
        if row is None or not suspension_visible(seen, row.institution_id, row.region):
            raise NotFound(f"no suspension {num}")
    else:
        raise ValueError(f"unknown scoped kind {kind!r}")


async def suspension_view(conn: AsyncConnection, scope: Scope) -> Scope:
    """The scope in which suspensions are seen: the user's, widened by the institutions (and their
    regions) of the active hearings in scope - a suspension of the SIZO a court's hearing connects to
    blocks that hearing (its view names it), so the court's people see it too."""
    if scope.national:
        return scope
    active = select(hearings.c.id).where(hearings.c.status.in_(list(ACTIVE_HEARING_STATUSES)),
                                         scope.hearing_clause())
    # Rule 24 suspends the participants' institutions, never a court (store.hearings.suspendable).
    q = (select(institutions.c.id, institutions.c.region).distinct()
         .join(hearing_participants, hearing_participants.c.institution_id == institutions.c.id)
         .where(hearing_participants.c.hearing_id.in_(active), institutions.c.kind != InstitutionKind.COURT))
    rows = (await conn.execute(q)).all()
    covered = scope.covered or frozenset()
    if all(r.id in covered for r in rows):
        return scope
    return Scope(institutions=scope.institutions, regions=scope.regions, covered=covered | {r.id for r in rows},
                 covered_regions=scope.covered_regions | {r.region for r in rows})


def suspension_visible(scope: Scope, institution_id: str | None, region: str | None) -> bool:
    """Whether a suspension (rule 24) concerns the user: of an institution in scope, or of a region
    with one."""
    return scope.covers(institution_id) if institution_id is not None else scope.sees_region(region)


def require_institution(scope: Scope, institution_id: str | None, what: str) -> None:
    """NotFound for `what` (e.g. "terminal 't1'") unless its institution is in scope."""
    if not scope.covers(institution_id):
        raise NotFound(f"no {what}")
