"""REST routes of escalation (rules 16, 17), contacts and the act of technical
impossibility (rule 18). `ROUTES` joins the API's route table (and so the
OpenAPI document) through `api.setup_routes(app, extra=...)`.

| route                                          | who                 |
|------------------------------------------------|---------------------|
| GET  /api/v1/escalations?state=open|all&hearing_id= | any reader     |
| GET  /api/v1/escalations/{id}                  | any reader          |
| POST /api/v1/escalations/{id}/ack              | technician, admin   |
| POST /api/v1/escalations/{id}/cannot-fix       | technician, admin   |
| POST /api/v1/escalations/{id}/resolve          | technician, admin   |
| GET/POST /api/v1/institutions/{id}/contacts, DELETE /api/v1/contacts/{id} | admin (registry) |
| POST /api/v1/hearings/{id}/act                 | secretary, admin    |
| GET  /api/v1/hearings/{id}/act[.html|.pdf]     | any reader          |
| POST /api/v1/hearings/{id}/act/signatures      | secretary (head of office, secretary), technician (technician), admin |
"""
from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from controller import acts as acts_mod
from controller import auth
from controller.api import API, Query, Route, body, now, ok, path_int, q_choice, q_int
from controller.errors import Invalid, NotFound
from controller.escalation import ACTS_KEY, ESCALATIONS_KEY
from controller.keys import DB_KEY, SCHEDULER_KEY, USER_KEY
from controller.models import In
from controller.store import escalations as esc_repo
from controller.store import registry
from controller.store import users as users_repo
from controller.store.hearings import iso

# --- models ----------------------------------------------------------------------------------------

class NoteIn(In):
    note: str | None = Field(None, max_length=2000)


class ActionOut(BaseModel):
    action: Literal["opened", "step2", "ack", "cannot_fix", "resolved"]
    by: str
    role: str | None
    at: str
    note: str | None


class NotificationOut(BaseModel):
    id: int
    step: int
    channel: Literal["webhook", "email"]
    target: str
    institution_id: str | None
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    sent_at: str | None


class EscalationHearing(BaseModel):
    id: int
    case_number: str
    court_name: str
    room: str
    start_utc: str
    start_local: str
    status: str


class EscalationOut(BaseModel):
    id: int
    hearing_id: int
    cause: Literal["test_failed", "preconnect_failed", "reconnect_failed", "agent_offline", "manual"]
    detail: dict[str, Any]
    state: Literal["open", "acknowledged", "cannot_fix", "resolved"]
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
    kind: Literal["technician", "organiser"] = Field(
        description="technician: told at step 1 (rule 16); organiser: at step 2 (rule 17)")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    webhook_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    user: str | None = Field(None, description="a user of this controller (e.g. the technician's account)")

    @model_validator(mode="after")
    def _reachable(self):
        if not (self.email or self.webhook_url or self.user):
            raise ValueError("email: give an email, a webhook_url or a user")
        return self


class ContactOut(BaseModel):
    id: int
    institution_id: str
    kind: Literal["technician", "organiser"]
    name: str
    email: str | None
    webhook_url: str | None
    user_id: int | None
    created_at: str


class ActDraftIn(In):
    note: str | None = Field(None, max_length=4000, description="the secretary's words, printed in the act")


class SignatureIn(In):
    role: Literal["head_of_office", "secretary", "technician"]
    name: str = Field(min_length=1, max_length=200, description="the signer's name as printed")


class SignatureOut(BaseModel):
    role: Literal["head_of_office", "secretary", "technician"]
    name: str
    recorded_by: str
    signed_at: str
    signed_local: str | None


class ActOut(BaseModel):
    hearing_id: int
    status: Literal["draft", "final"] = Field(description="final once all three have signed; then immutable")
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

async def list_escalations(request):
    state = q_choice(request, "state", ("open", "all")) or "open"
    hid = request.query.get("hearing_id")
    hearing_id = q_int(request, "hearing_id", 0, 1, 2**31) if hid else None
    svc = request.app[ESCALATIONS_KEY]
    async with request.app[DB_KEY].read() as conn:
        rows = await esc_repo.list_escalations(conn, open_only=state == "open", hearing_id=hearing_id,
                                               limit=q_int(request, "limit", 500, 1, 5000))
        items = await svc.views(conn, rows, now(request))
    return ok({"items": items})


async def get_escalation(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(await request.app[ESCALATIONS_KEY].view(conn, path_int(request, "id"), now(request)))


def _action(name: str):
    async def handler(request):
        data = await body(request, NoteIn)
        eid = path_int(request, "id")
        t = now(request)
        svc = request.app[ESCALATIONS_KEY]
        async with request.app[DB_KEY].transaction() as conn:
            await getattr(svc, name)(conn, eid, request[USER_KEY], data.note, t)
            view = await svc.view(conn, eid, t)
        request.app[SCHEDULER_KEY].wake()      # notifications of step 2 go out now
        return ok(view)
    handler.__name__ = f"escalation_{name}"
    return handler


# --- contacts ----------------------------------------------------------------------------------

def _contact(c: dict) -> dict:
    return {**c, "created_at": iso(c["created_at"])}


async def list_contacts(request):
    iid = request.match_info["id"]
    async with request.app[DB_KEY].read() as conn:
        await registry.get_institution(conn, iid)
        return ok({"items": [_contact(c) for c in await esc_repo.list_contacts(conn, [iid])]})


async def add_contact(request):
    data = await body(request, ContactIn)
    iid = request.match_info["id"]
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
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
        await users_repo.record(conn, request[USER_KEY]["name"], "contact.create", f"institution:{iid}", t,
                                {"contact_id": c["id"], "kind": data.kind, "name": data.name})
    return ok(_contact(c), 201)


async def delete_contact(request):
    cid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        c = await esc_repo.get_contact(conn, cid)
        await esc_repo.delete_contact(conn, cid)
        await users_repo.record(conn, request[USER_KEY]["name"], "contact.delete",
                                f"institution:{c['institution_id']}", t, {"contact_id": cid})
    return web.Response(status=204)


# --- the act -----------------------------------------------------------------------------------

async def draft_act(request):
    data = await body(request, ActDraftIn)
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        view = await request.app[ACTS_KEY].draft(conn, hid, request[USER_KEY], data.note, t)
    return ok(view, 201)


async def get_act(request):
    async with request.app[DB_KEY].read() as conn:
        return ok(await request.app[ACTS_KEY].get(conn, path_int(request, "id")))


def _lang(request) -> str:
    return q_choice(request, "lang", acts_mod.LANGS) or "kk"


async def act_html(request):
    lang = _lang(request)
    async with request.app[DB_KEY].read() as conn:
        view = await request.app[ACTS_KEY].get(conn, path_int(request, "id"))
    html = await asyncio.to_thread(acts_mod.render_html, view, lang)
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def act_pdf(request):
    lang = _lang(request)
    hid = path_int(request, "id")
    async with request.app[DB_KEY].read() as conn:
        view = await request.app[ACTS_KEY].get(conn, hid)
    pdf = await asyncio.to_thread(acts_mod.render_pdf, view, lang)
    return web.Response(body=pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="act-hearing-{hid}-{lang}.pdf"'})


async def sign_act(request):
    data = await body(request, SignatureIn)
    hid = path_int(request, "id")
    t = now(request)
    async with request.app[DB_KEY].transaction() as conn:
        view = await request.app[ACTS_KEY].sign(conn, hid, data.role, data.name, request[USER_KEY], t)
    return ok(view, 201)


LANG_Q = Query("lang", {"type": "string", "enum": list(acts_mod.LANGS)}, "which language comes first (both are in)")

ROUTES: list[Route] = [
    Route("GET", f"{API}/escalations", list_escalations, auth.READ,
          "Escalations (rules 16, 17), newest first: unresolved (state=open, default) or all",
          response=("items", EscalationOut),
          query=[Query("state", {"type": "string", "enum": ["open", "all"]}),
                 Query("hearing_id", {"type": "integer"}), Query("limit", {"type": "integer"})]),
    Route("GET", f"{API}/escalations/{{id}}", get_escalation, auth.READ, "An escalation", response=EscalationOut),
    Route("POST", f"{API}/escalations/{{id}}/ack", _action("ack"), auth.TESTS_RUN,
          "A technician acknowledges the escalation", body=NoteIn, response=EscalationOut,
          extra_responses={409: "already resolved"}),
    Route("POST", f"{API}/escalations/{{id}}/cannot-fix", _action("cannot_fix"), auth.TESTS_RUN,
          "The technician cannot remove the fault: step 2 now (rule 17) and the act is drafted (rule 18)",
          body=NoteIn, response=EscalationOut, extra_responses={409: "resolved, or marked already"}),
    Route("POST", f"{API}/escalations/{{id}}/resolve", _action("resolve"), auth.TESTS_RUN,
          "The fault is removed", body=NoteIn, response=EscalationOut, extra_responses={409: "already resolved"}),
    Route("GET", f"{API}/institutions/{{id}}/contacts", list_contacts, auth.READ,
          "Who is told of an escalation at this institution", response=("items", ContactOut)),
    Route("POST", f"{API}/institutions/{{id}}/contacts", add_contact, auth.REGISTRY,
          "Add a technician or organiser contact (e-mail, webhook, user)", body=ContactIn, response=ContactOut,
          status=201),
    Route("DELETE", f"{API}/contacts/{{id}}", delete_contact, auth.REGISTRY, "Remove a contact", status=204),
    Route("POST", f"{API}/hearings/{{id}}/act", draft_act, auth.HEARINGS_WRITE,
          "Draft (or redraft while unsigned) the act of technical impossibility (rule 18)", body=ActDraftIn,
          response=ActOut, status=201, extra_responses={409: "the act is signed or final"}),
    Route("GET", f"{API}/hearings/{{id}}/act", get_act, auth.READ, "The act: status, signatures, content",
          response=ActOut),
    Route("GET", f"{API}/hearings/{{id}}/act.html", act_html, auth.READ,
          "The act, printable HTML in Kazakh and Russian", query=[LANG_Q], content_type="text/html"),
    Route("GET", f"{API}/hearings/{{id}}/act.pdf", act_pdf, auth.READ,
          "The act as PDF in Kazakh and Russian", query=[LANG_Q], content_type="application/pdf"),
    Route("POST", f"{API}/hearings/{{id}}/act/signatures", sign_act, auth.READ,
          "Record a signature: head_of_office and secretary by a secretary, technician by a technician "
          "(admin any); the third makes the act final", body=SignatureIn, response=ActOut, status=201,
          extra_responses={409: "signed already, or the act is final"}),
]


# --- command line: vks-controller contact add|list|remove ------------------------------------------

def add_contact_parser(sub, parents) -> None:
    c = sub.add_parser("contact", help="who is told of escalations (rules 16, 17)")
    csub = c.add_subparsers(dest="contact_command", required=True, metavar="ACTION")
    a = csub.add_parser("add", parents=parents, help="add a technician or organiser contact to an institution")
    a.add_argument("institution")
    a.add_argument("--kind", required=True, choices=("technician", "organiser"),
                   help="technician: told at step 1 (rule 16); organiser: at step 2 (rule 17)")
    a.add_argument("--name", required=True)
    a.add_argument("--email")
    a.add_argument("--webhook", metavar="URL")
    a.add_argument("--user", help="a user of this controller")
    ls = csub.add_parser("list", parents=parents, help="list contacts (of one institution)")
    ls.add_argument("institution", nargs="?")
    rm = csub.add_parser("remove", parents=parents, help="remove a contact")
    rm.add_argument("id", type=int)


async def _contact_command(settings, args) -> list[str]:
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    try:
        await migrate(db)
        now = utcnow()
        async with db.transaction() as conn:
            if args.contact_command == "add":
                data = ContactIn.model_validate({"kind": args.kind, "name": args.name, "email": args.email,
                                                 "webhook_url": args.webhook, "user": args.user})
                await registry.get_institution(conn, args.institution)
                user_id = (await users_repo.get_user(conn, data.user))["id"] if data.user else None
                c = await esc_repo.add_contact(conn, {"institution_id": args.institution, "kind": data.kind,
                                                      "name": data.name, "email": data.email,
                                                      "webhook_url": data.webhook_url, "user_id": user_id}, now)
                await users_repo.record(conn, "cli", "contact.create", f"institution:{args.institution}", now,
                                        {"contact_id": c["id"], "kind": data.kind, "name": data.name})
                return [str(c["id"])]
            if args.contact_command == "remove":
                c = await esc_repo.get_contact(conn, args.id)
                await esc_repo.delete_contact(conn, args.id)
                await users_repo.record(conn, "cli", "contact.delete", f"institution:{c['institution_id']}", now,
                                        {"contact_id": args.id})
                return []
            rows = await esc_repo.list_contacts(conn, [args.institution] if args.institution else None)
            return [f"{c['id']}\t{c['institution_id']}\t{c['kind']}\t{c['name']}\t{c['email'] or ''}\t"
                    f"{c['webhook_url'] or ''}" for c in rows]
    finally:
        await db.close()


def run_contact_command(settings, args) -> int:
    """Exit 0 and print the new id / the list; 2 with a message on bad input."""
    import sys

    from pydantic import ValidationError

    from controller.errors import ControllerError
    try:
        lines = asyncio.run(_contact_command(settings, args))
    except ValidationError as exc:
        e = exc.errors()[0]
        print(f"vks-controller: contact: {'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}", file=sys.stderr)
        return 2
    except ControllerError as exc:
        print(f"vks-controller: contact: {exc.message}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0
