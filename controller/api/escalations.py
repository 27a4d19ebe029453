"""REST resources of escalation (rules 16, 17), contacts and the act of technical impossibility
(rule 18).

| route                                          | who                 |
|------------------------------------------------|---------------------|
| GET  /api/v1/escalations?state=open|all&hearing_id= | any reader     |
| GET  /api/v1/escalations/{id}                  | any reader          |
| POST /api/v1/escalations/{id}/ack              | technician, admin   |
| POST /api/v1/escalations/{id}/cannot-fix       | technician, admin   |
| POST /api/v1/escalations/{id}/resolve          | technician, admin   |
| GET  /api/v1/institutions/{id}/contacts        | any reader          |
| POST /api/v1/institutions/{id}/contacts        | admin (registry)    |
| DELETE /api/v1/contacts/{id}                   | admin (registry)    |
| POST /api/v1/hearings/{id}/act                 | secretary, admin    |
| GET  /api/v1/hearings/{id}/act[.html|.pdf]     | any reader          |
| POST /api/v1/hearings/{id}/act/signatures      | the signer in their role; no account: hearings.write |
"""
from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from contract.vocab import (
    ActStatus,
    ContactKind,
    DeliveryState,
    EscalationAction,
    EscalationCause,
    EscalationState,
    NotificationChannel,
    SignerRole,
)
from controller import access, auth
from controller import acts as acts_mod
from controller.api.audit import Audit, audit, transaction
from controller.api.hearings import HEARING
from controller.api.requests import API, body, now, ok, path_int, q_choice, q_int
from controller.api.routing import Query, Route, items
from controller.errors import Invalid, NotFound
from controller.escalation import ACTS_KEY, ESCALATIONS_KEY
from controller.keys import DB_KEY, SCHEDULER_KEY, USER_KEY
from controller.models import In, OneLine
from controller.store import escalations as esc_repo
from controller.store import registry
from controller.store import users as users_repo
from controller.store.hearings import iso

# --- models ----------------------------------------------------------------------------------------

class NoteIn(In):
    """A technician's optional note on an escalation action."""

    note: str | None = Field(None, max_length=2000)


class ActionOut(BaseModel):
    """One action on an escalation: who, in which role, when."""

    action: EscalationAction
    by: str
    role: str | None
    at: str
    note: str | None


class NotificationOut(BaseModel):
    """One notification of an escalation and its delivery."""

    id: int
    step: int
    channel: NotificationChannel
    target: str
    institution_id: str | None
    state: DeliveryState
    attempts: int
    last_error: str | None
    sent_at: str | None


class EscalationHearing(BaseModel):
    """The hearing an escalation is about, in brief."""

    id: int
    case_number: str
    court_name: str
    room: str
    start_utc: str
    start_local: str
    status: str


class EscalationOut(BaseModel):
    """An escalation (rules 16, 17): its state, step, actions and notifications."""

    id: int
    hearing_id: int
    cause: EscalationCause
    detail: dict[str, Any]
    state: EscalationState
    step: int = Field(description="1: the technicians of both sides told (rule 16); 2: the organisers (rule 17)")
    level: Literal["technicians", "organiser"]
    opened_at: str
    step2_due_at: str | None = Field(description="when step 2 follows if not resolved")
    step2_at: str | None
    step2_reason: Literal["not_fixed", "cannot_fix"] | None
    acked_at: str | None
    acked_by: str | None
    cannot_fix_at: str | None
    cannot_fix_by: str | None
    resolved_at: str | None
    resolved_by: str | None
    hearing: EscalationHearing | None
    actions: list[ActionOut]
    notifications: list[NotificationOut]


class ContactIn(In):
    """A contact to add: told at step 1 (technician) or step 2 (organiser)."""

    kind: ContactKind = Field(
        description="technician: told at step 1 (rule 16); organiser: at step 2 (rule 17); coordinator (of a "
                    "court): told when a hearing there needs the agreement of its date (rules 11, 12)")
    name: str = Field(min_length=1, max_length=200)
    email: OneLine | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    user: str | None = Field(None, description="a user of this controller (e.g. the technician's account)")

    @model_validator(mode="after")
    def _reachable(self):
        if not (self.email or self.webhook_url or self.user):
            raise ValueError("email: give an email, a webhook_url or a user")
        return self


class ContactOut(BaseModel):
    """A contact of an institution."""

    id: int
    institution_id: str
    kind: ContactKind
    name: str
    email: str | None
    webhook_url: str | None
    user_id: int | None
    created_at: str


class ActDraftIn(In):
    """The secretary's request to draft the act."""

    note: str | None = Field(None, max_length=4000, description="the secretary's words, printed in the act")


class SignatureIn(In):
    """A signature on the act (rule 18: the head of the court office, the secretary, the technician).

    `{}`: the signed-in user signs, in the role their account holds (head_of_office, secretary or
    technician; `role`, if given, must be it) and under their account's name. `{"no_account": true,
    "role": R, "name": "..."}`: a user who may change hearings (secretary, head_of_office, admin) enters
    the signature of someone with no account, in a role other than their own (403 own_role); the act
    records who entered it, and a name that is an account's is refused (409 signer_has_account: that
    person signs themselves). An act holds at most one signature with no account (409 one_no_account).
    One account gives at most one of an act's signatures, one name appears on it once (409)."""

    role: SignerRole | None = Field(None, description="the signature given: the account's own role when "
                                                      "signing oneself; required with no_account")
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="only with no_account: the signer's name as printed")
    no_account: bool = Field(False, description="true: the signer has no account; the caller enters their "
                                                "role and name")


class SignatureOut(BaseModel):
    """A signature recorded on the act."""

    role: SignerRole
    name: str = Field(description="the signer's name as printed")
    user_name: str | None = Field(description="the account that signed; null: a signer with no account")
    recorded_by: str = Field(description="the account that recorded it (for a signer with no account: "
                                         "who entered it)")
    entered_by: str | None = Field(description="who entered a signature with no account, as the act prints it")
    signed_at: str
    signed_local: str | None


class ActOut(BaseModel):
    """The act of technical impossibility (rule 18): status, signatures and content."""

    hearing_id: int
    status: ActStatus = Field(description="final once all three have signed; then immutable")
    trigger: Literal["not_fixed", "cannot_fix", "requested"]
    content_sha256: str
    final_sha256: str | None = Field(description="seals content and signatures once final")
    documents: dict[str, Any] | None = Field(description="sha256 of the final HTML and PDF per language")
    created_at: str
    created_by: str
    updated_at: str
    finalized_at: str | None
    signatures: list[SignatureOut]
    missing_signatures: list[str]
    content: dict[str, Any] = Field(description="vks.act/1: hearing, reason, timeline, evidence, escalations")


# --- escalations -------------------------------------------------------------------------------

async def list_escalations(request: web.Request) -> web.Response:
    """GET /escalations[?state=open|all&hearing_id=&limit=], newest first: those of hearings in the
    user's scope (controller.access)."""
    state = q_choice(request, "state", ("open", "all")) or "open"
    hid = request.query.get("hearing_id")
    hearing_id = q_int(request, "hearing_id", 0, 1, 2**31) if hid else None
    svc = request.app[ESCALATIONS_KEY]
    scope = access.of(request)
    async with request.app[DB_KEY].read() as conn:
        rows = await esc_repo.list_escalations(conn, open_only=state == "open", hearing_id=hearing_id,
                                               hearings_where=None if scope.national else scope.hearing_clause(),
                                               limit=q_int(request, "limit", 500, 1, 5000))
        out = await svc.views(conn, rows, now(request))
    return ok({"items": out})


async def get_escalation(request: web.Request) -> web.Response:
    """GET /escalations/{id}."""
    async with request.app[DB_KEY].read() as conn:
        return ok(await request.app[ESCALATIONS_KEY].view(conn, path_int(request, "id"), now(request)))


async def _act_on(request: web.Request, action: str) -> web.Response:
    data = await body(request, NoteIn)
    eid = path_int(request, "id")
    t = now(request)
    svc = request.app[ESCALATIONS_KEY]
    async with transaction(request, t) as conn:
        acted = await getattr(svc, action)(conn, eid, request[USER_KEY], data.note, t)
        if acted is False:
            audit(request).skip()          # acknowledged by this person already
        else:
            audit(request).note({"note": data.note})
        out = await svc.view(conn, eid, t)
    request.app[SCHEDULER_KEY].wake()      # notifications of step 2 go out now
    return ok(out)


async def escalation_ack(request: web.Request) -> web.Response:
    """POST /escalations/{id}/ack."""
    return await _act_on(request, "ack")


async def escalation_cannot_fix(request: web.Request) -> web.Response:
    """POST /escalations/{id}/cannot-fix: step 2 now (rule 17), the act drafted (rule 18)."""
    return await _act_on(request, "cannot_fix")


async def escalation_resolve(request: web.Request) -> web.Response:
    """POST /escalations/{id}/resolve."""
    return await _act_on(request, "resolve")


# --- contacts ----------------------------------------------------------------------------------

def contact_out(c: dict) -> dict:
    """A contact as the API shows it."""
    return {**c, "created_at": iso(c["created_at"])}


async def list_contacts(request: web.Request) -> web.Response:
    """GET /institutions/{id}/contacts."""
    iid = request.match_info["id"]
    async with request.app[DB_KEY].read() as conn:
        await registry.get_institution(conn, iid)
        return ok({"items": [contact_out(c) for c in await esc_repo.list_contacts(conn, [iid])]})


async def add_contact(request: web.Request) -> web.Response:
    """POST /institutions/{id}/contacts."""
    data = await body(request, ContactIn)
    iid = request.match_info["id"]
    t = now(request)
    async with transaction(request, t) as conn:
        await registry.get_institution(conn, iid)
        user_id = None
        if data.user:
            try:
                user_id = (await users_repo.get_user(conn, data.user))["id"]
            except NotFound:
                raise Invalid(f"no user {data.user!r}", field="user") from None
        c = await esc_repo.add_contact(conn, {"institution_id": iid, "kind": data.kind, "name": data.name,
                                              "email": data.email, "webhook_url": data.webhook_url,
                                              "user_id": user_id}, t)
        audit(request).note({"contact_id": c["id"], "kind": data.kind, "name": data.name})
    return ok(contact_out(c), 201)


async def delete_contact(request: web.Request) -> web.Response:
    """DELETE /contacts/{id} (the audit target is the contact's institution)."""
    cid = path_int(request, "id")
    async with transaction(request) as conn:
        c = await esc_repo.get_contact(conn, cid)
        await esc_repo.delete_contact(conn, cid)
        audit(request).note({"contact_id": cid}, institution_id=c["institution_id"])
    return web.Response(status=204)


# --- the act -----------------------------------------------------------------------------------

async def draft_act(request: web.Request) -> web.Response:
    """POST /hearings/{id}/act: draft (or redraft while unsigned)."""
    data = await body(request, ActDraftIn)
    hid = path_int(request, "id")
    t = now(request)
    async with transaction(request, t) as conn:
        out = await request.app[ACTS_KEY].draft(conn, hid, request[USER_KEY], data.note, t)
        audit(request).note({"content_sha256": out["content_sha256"]})
    return ok(out, 201)


async def get_act(request: web.Request) -> web.Response:
    """GET /hearings/{id}/act."""
    async with request.app[DB_KEY].read() as conn:
        return ok(await request.app[ACTS_KEY].get(conn, path_int(request, "id")))


def _lang(request: web.Request) -> str:
    return q_choice(request, "lang", acts_mod.LANGS) or "kk"


# The act's page is a document: its own <style> and nothing else (no script, image, frame, form or
# base; a signer's name is escaped by the template, and if it ever were not, nothing could run).
ACT_HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def act_html(request: web.Request) -> web.Response:
    """GET /hearings/{id}/act.html: printable, both languages."""
    lang = _lang(request)
    async with request.app[DB_KEY].read() as conn:
        act = await request.app[ACTS_KEY].get(conn, path_int(request, "id"))
    html = await asyncio.to_thread(acts_mod.render_html, act, lang)
    return web.Response(text=html, content_type="text/html", charset="utf-8", headers=ACT_HTML_HEADERS)


async def act_pdf(request: web.Request) -> web.Response:
    """GET /hearings/{id}/act.pdf: both languages."""
    lang = _lang(request)
    hid = path_int(request, "id")
    async with request.app[DB_KEY].read() as conn:
        act = await request.app[ACTS_KEY].get(conn, hid)
    pdf = await asyncio.to_thread(acts_mod.render_pdf, act, lang)
    return web.Response(body=pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="act-hearing-{hid}-{lang}.pdf"'})


async def sign_act(request: web.Request) -> web.Response:
    """POST /hearings/{id}/act/signatures. The service keeps its own transactions (a final act's
    documents render with none open) and writes the audit row in the one that stores the signature."""
    data = await body(request, SignatureIn)
    hid = path_int(request, "id")
    who = acts_mod.signer(request[USER_KEY], role=data.role, name=data.name, no_account=data.no_account)
    entry = audit(request)
    entry.note({"role": who.role, "name": who.name, "no_account": who.user_name is None})
    entry.at = t = now(request)
    out = await request.app[ACTS_KEY].sign(request.app[DB_KEY], hid, who, t, recorded=entry.write)
    return ok(out, 201)


LANG_Q = Query("lang", {"type": "string", "enum": list(acts_mod.LANGS)}, "which language comes first (both are in)")
ESCALATION = "escalation:{id}"

ROUTES: list[Route] = [
    Route("GET", f"{API}/escalations", list_escalations, auth.READ,
          "Escalations (rules 16, 17), newest first: unresolved (state=open, default) or all",
          response=items(EscalationOut),
          query=[Query("state", {"type": "string", "enum": ["open", "all"]}),
                 Query("hearing_id", {"type": "integer"}), Query("limit", {"type": "integer"})]),
    Route("GET", f"{API}/escalations/{{id}}", get_escalation, auth.READ, "An escalation", response=EscalationOut,
          scoped=access.ESCALATION),
    Route("POST", f"{API}/escalations/{{id}}/ack", escalation_ack, auth.TESTS_RUN,
          "A technician acknowledges the escalation", body=NoteIn, response=EscalationOut,
          extra_responses={409: "already resolved"}, audit=Audit("escalation.ack", ESCALATION),
          scoped=access.ESCALATION),
    Route("POST", f"{API}/escalations/{{id}}/cannot-fix", escalation_cannot_fix, auth.TESTS_RUN,
          "The technician cannot remove the fault: step 2 now (rule 17) and the act is drafted (rule 18)",
          body=NoteIn, response=EscalationOut, extra_responses={409: "resolved, or marked already"},
          audit=Audit("escalation.cannot_fix", ESCALATION), scoped=access.ESCALATION),
    Route("POST", f"{API}/escalations/{{id}}/resolve", escalation_resolve, auth.TESTS_RUN,
          "The fault is removed", body=NoteIn, response=EscalationOut, extra_responses={409: "already resolved"},
          audit=Audit("escalation.resolve", ESCALATION), scoped=access.ESCALATION),
    Route("GET", f"{API}/institutions/{{id}}/contacts", list_contacts, auth.READ,
          "Who is told of an escalation at this institution", response=items(ContactOut),
          scoped=access.INSTITUTION),
    Route("POST", f"{API}/institutions/{{id}}/contacts", add_contact, auth.REGISTRY,
          "Add a technician, organiser or coordinator contact (e-mail, webhook, user)", body=ContactIn,
          response=ContactOut,
          status=201, audit=Audit("contact.create", "institution:{id}")),
    Route("DELETE", f"{API}/contacts/{{id}}", delete_contact, auth.REGISTRY, "Remove a contact", status=204,
          audit=Audit("contact.delete", "institution:{institution_id}")),
    Route("POST", f"{API}/hearings/{{id}}/act", draft_act, auth.HEARINGS_WRITE,
          "Draft (or redraft while unsigned) the act of technical impossibility (rule 18)", body=ActDraftIn,
          response=ActOut, status=201, extra_responses={409: "the act is signed or final"},
          audit=Audit("act.draft", HEARING), scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/act", get_act, auth.READ, "The act: status, signatures, content",
          response=ActOut, scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/act.html", act_html, auth.READ,
          "The act, printable HTML in Kazakh and Russian", query=[LANG_Q], content_type="text/html",
          scoped=access.HEARING),
    Route("GET", f"{API}/hearings/{{id}}/act.pdf", act_pdf, auth.READ,
          "The act as PDF in Kazakh and Russian", query=[LANG_Q], content_type="application/pdf",
          scoped=access.HEARING),
    Route("POST", f"{API}/hearings/{{id}}/act/signatures", sign_act, auth.READ,
          "Sign the act as oneself, in the role of one's account (head_of_office, secretary, technician), or "
          "enter a signer with no account (secretary, head_of_office, admin); the third makes the act final",
          body=SignatureIn, response=ActOut, status=201,
          extra_responses={403: "the account's role gives no signature, or not this one",
                           409: "the role, the account or the name has signed already; the name is an "
                                "account's; or the act is final"},
          audit=Audit("act.sign", HEARING), scoped=access.HEARING),
]
