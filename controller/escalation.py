"""Escalation (rules 16, 17): tell the technicians of both sides at once when a
check fails or a reconnect does not succeed; if it is not fixed in time, or a
technician says it cannot be fixed, tell the court and the institution
organising the VKS.

State machine of one escalation (state, step):

    open(1) --ack--> acknowledged(1)
    open|acknowledged (step 1) --step2_after_s passes--> same state, step 2 (reason not_fixed)
    open|acknowledged --cannot-fix--> cannot_fix, step 2 (reason cannot_fix) + act drafted (rule 18)
    any state but resolved --resolve (technician, admin, or a passing check)--> resolved

- Opening is idempotent per hearing and cause while not resolved
  (`open_key` is unique): a second failure of the same kind returns the same id.
- Step 1 notifies the "technician" contacts of the hearing's court and of every
  remote institution; step 2 the "organiser" contacts of the same institutions;
  each step also the `escalation.webhooks` of the config. The web page shows
  every unresolved escalation (`GET /api/v1/escalations`).
- Each notification is a row and a durable job (`escalation.notify`, key
  `notify:{id}`): a webhook POST or an e-mail, retried with exponential backoff
  and jitter until delivered or `max_attempts`; a controller restart loses none.
- Step 2 is a durable job too (`escalation.step2`, key `escalation:{id}:step2`),
  and so is the later check whether the unresolved escalation delays the start
  (`escalation.act`, key `escalation:{id}:act`, at start - act_lead_s): then the
  act of technical impossibility is drafted (controller.acts).
- Every change is in the hearing's event record (escalation_opened,
  escalation_step2, escalation_acknowledged, escalation_cannot_fix,
  escalation_resolved, escalation_notification_failed), in the transaction of
  the change. When a person made it, the route that took the request writes its
  audit row (declared beside the route, controller.api.audit) in that same
  transaction; this service writes none.

Entry points: `await EscalationService.open(hearing_id=..., cause=...,
detail=...)` (its own transaction; live monitoring uses it), or
`EscalationService.open_in(conn, ...)` inside the caller's transaction (the check
service uses this, so a failed check and its escalation are written together).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from contract.backoff import backoff_s
from contract.vocab import (
    CheckKind,
    ContactKind,
    DeliveryState,
    EscalationAction,
    EscalationCause,
    EscalationState,
    HearingStatus,
    NotificationChannel,
    words,
)
from controller import notify
from controller.acts import ActService
from controller.errors import Conflict, Invalid
from controller.scheduler import Clock, JobContext, Scheduler
from controller.settings import ControllerSettings
from controller.store import escalations as repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import jobs as jobs_repo
from controller.store.db import Database
from controller.store.hearings import iso

log = logging.getLogger(__name__)

CAUSES = words(EscalationCause)
NOTIFY_KIND = "escalation.notify"
STEP2_KIND = "escalation.step2"
ACT_KIND = "escalation.act"
# The escalation cause of a failed check of each kind (rules 16, 17).
CHECK_CAUSE = {CheckKind.TEST: EscalationCause.TEST_FAILED,
               CheckKind.PRECONNECT: EscalationCause.PRECONNECT_FAILED}
INACTIVE = (HearingStatus.HELD, HearingStatus.CANCELLED)


def step2_key(eid: int) -> str:
    """The job key of an escalation's step 2."""
    return f"escalation:{eid}:step2"


def act_key(eid: int) -> str:
    """The job key of an escalation's act check (rule 18)."""
    return f"escalation:{eid}:act"


def notify_key(nid: int) -> str:
    """The job key of a notification's delivery."""
    return f"notify:{nid}"


# A notification's retry delay: contract.backoff's exponential delay, jittered in its upper half
# (so many notifications to one endpoint that comes back do not all retry in the same second).
RETRY_SPREAD = (0.5, 1.0)


def recipients(contacts: list[dict], *, step: int, extra_webhooks: list[str],
               email_enabled: bool) -> list[tuple[str, str, str | None]]:
    """[(channel, target, institution_id)] for a step: the technicians (step 1)
    or organisers (step 2) of the given institutions' contacts, and the extra
    webhooks; each target once."""
    kind = ContactKind.TECHNICIAN if step == 1 else ContactKind.ORGANISER
    out: list[tuple[str, str, str | None]] = []
    seen: set[tuple[str, str]] = set()

    def add(channel: str, target: str, inst: str | None) -> None:
        if (channel, target) not in seen:
            seen.add((channel, target))
            out.append((channel, target, inst))
    for c in contacts:
        if c["kind"] != kind:
            continue
        if c.get("webhook_url"):
            add(NotificationChannel.WEBHOOK, c["webhook_url"], c["institution_id"])
        if c.get("email") and email_enabled:
            add(NotificationChannel.EMAIL, c["email"], c["institution_id"])
    for url in extra_webhooks:
        add(NotificationChannel.WEBHOOK, url, None)
    return out


def escalation_view(e: dict, actions: list[dict], notes: list[dict], hearing: dict | None,
                    step2_after_s: float) -> dict[str, Any]:
    """The JSON of one escalation (API and web page)."""
    due = None
    if e["state"] != EscalationState.RESOLVED and e["step"] == 1:
        due = iso(e["opened_at"] + dt.timedelta(seconds=step2_after_s))
    return {
        "id": e["id"], "hearing_id": e["hearing_id"], "cause": e["cause"], "detail": e["detail"],
        "state": e["state"], "step": e["step"], "level": notify.level(e["step"]),
        "opened_at": iso(e["opened_at"]), "step2_due_at": due, "step2_at": iso(e["step2_at"]),
        "step2_reason": e["step2_reason"], "acked_at": iso(e["acked_at"]), "acked_by": e["acked_by"],
        "cannot_fix_at": iso(e["cannot_fix_at"]), "cannot_fix_by": e["cannot_fix_by"],
        "resolved_at": iso(e["resolved_at"]), "resolved_by": e["resolved_by"],
        "hearing": None if hearing is None else {
            "id": hearing["id"], "case_number": hearing["case_number"], "court_name": hearing["court"]["name"],
            "room": hearing["room"]["name"], "start_utc": hearing["start_utc"],
            "start_local": hearing["start_local"], "status": hearing["status"]},
        "actions": [{"action": a["action"], "by": a["by"], "role": a["role"], "at": iso(a["at"]),
                     "note": a["note"]} for a in actions],
        "notifications": [{"id": n["id"], "step": n["step"], "channel": n["channel"], "target": n["target"],
                           "institution_id": n["institution_id"], "state": n["state"],
                           "attempts": n["attempts"], "last_error": n["last_error"],
                           "sent_at": iso(n["sent_at"])} for n in notes],
    }


class EscalationService:
    """Opens escalations, runs their two steps and delivers their notifications (durable jobs)."""
    def __init__(self, db: Database, settings: ControllerSettings, clock: Clock, notifier: notify.Notifier,
                 *, count: Callable[[str, str], None] | None = None, acts: Any = None):
        self.db = db
        self.settings = settings
        self.cfg = settings.escalation
        self.clock = clock
        self.notifier = notifier
        self.count = count          # metrics: count(level, trigger)
        self.acts = acts            # controller.acts.ActService (drafts the act at step 2)
        self.wake: Callable[[], None] = lambda: None

    def register(self, scheduler: Scheduler) -> None:
        scheduler.register(NOTIFY_KIND, self.job_notify)
        scheduler.register(STEP2_KIND, self.job_step2)
        scheduler.register(ACT_KIND, self.job_act)
        self.wake = scheduler.wake

    def _count(self, step: int, trigger: str) -> None:
        if self.count is None:
            return
        try:
            self.count(notify.level(step), trigger)
        except ValueError:      # a trigger the metrics do not know (e.g. agent_offline): logged, not fatal
            log.info("escalation trigger %r has no metric label", trigger)

    # --- opening and the two steps ---------------------------------------------------------------

    async def open(self, *, hearing_id: int, cause: str, detail: dict) -> int:
        """Open (or find) the escalation of `hearing_id` for `cause` in its own transaction and start
        step 1. Returns its id. Call it outside any open transaction of yours (on SQLite there is one
        writer at a time); inside one, use `open_in(conn, ...)`."""
        async with self.db.transaction() as conn:
            eid, _ = await self.open_in(conn, hearing_id=hearing_id, cause=cause, detail=detail, now=self.clock())
        self.wake()
        return eid

    async def open_in(self, conn: AsyncConnection, *, hearing_id: int, cause: str, detail: dict | None,
                      now: dt.datetime, by: str = "system", subject: str | None = None) -> tuple[int, bool]:
        """Open an escalation for `hearing_id` and `cause` (and `subject`: e.g. the terminal it is
        about) inside the caller's transaction (hearing row locked first). Returns (id, opened_now);
        an unresolved one for the same hearing, cause and subject is returned as it is."""
        if cause not in CAUSES:
            raise Invalid(f"cause: expected one of {', '.join(CAUSES)}", field="cause")
        await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
        existing = await repo.find_open(conn, hearing_id, cause, for_update=True, subject=subject)
        if existing is not None:
            return existing["id"], False
        detail = dict(detail or {})
        eid = await repo.insert_escalation(conn, hearing_id=hearing_id, cause=cause, detail=detail, now=now,
                                           subject=subject)
        await repo.add_action(conn, eid, EscalationAction.OPENED, by, now)
        sent = await self._notify_step(conn, eid, hearing_id, 1, now)
        await events_repo.append(conn, hearing_id, "escalation_opened", now, {
            "escalation_id": eid, "cause": cause, "step": 1, "by": by, "detail": detail, "notified": sent})
        await jobs_repo.enqueue(conn, STEP2_KIND, step2_key(eid), now + dt.timedelta(seconds=self.cfg.step2_after_s),
                                now, {"escalation_id": eid})
        self._count(1, cause)
        return eid, True

    async def _institutions(self, conn: AsyncConnection, hearing_id: int) -> list[str]:
        h = await hearings_repo.get_hearing(conn, hearing_id)
        parts = (await hearings_repo.participants_of(conn, [hearing_id]))[hearing_id]
        out = [h["court_id"]]
        for p in parts:
            if p["institution_id"] not in out:
                out.append(p["institution_id"])
        return out

    async def _notify_step(self, conn: AsyncConnection, eid: int, hearing_id: int, step: int,
                           now: dt.datetime) -> dict:
        insts = await self._institutions(conn, hearing_id)
        contacts = await repo.list_contacts(conn, insts)
        targets = recipients(contacts, step=step, extra_webhooks=self.cfg.webhooks,
                             email_enabled=self.notifier.email_enabled)
        for channel, target, inst in targets:
            nid = await repo.add_notification(conn, eid=eid, step=step, channel=channel, target=target,
                                              institution_id=inst, now=now)
            await jobs_repo.enqueue(conn, NOTIFY_KIND, notify_key(nid), now, now, {"notification_id": nid})
        kind = ContactKind.TECHNICIAN if step == 1 else ContactKind.ORGANISER
        return {"institutions": insts, "webhook": sum(1 for t in targets if t[0] == NotificationChannel.WEBHOOK),
                "email": sum(1 for t in targets if t[0] == NotificationChannel.EMAIL),
                "contacts": sum(1 for c in contacts if c["kind"] == kind)}

    async def _to_step2(self, conn: AsyncConnection, e: dict, reason: str, by: str, now: dt.datetime) -> None:
        await repo.update_escalation(conn, e["id"], step=2, step2_at=now, step2_reason=reason, updated_at=now)
        await repo.add_action(conn, e["id"], EscalationAction.STEP2, by, now, note=reason)
        sent = await self._notify_step(conn, e["id"], e["hearing_id"], 2, now)
        await events_repo.append(conn, e["hearing_id"], "escalation_step2", now, {
            "escalation_id": e["id"], "cause": e["cause"], "reason": reason, "by": by, "notified": sent})
        await jobs_repo.cancel(conn, [step2_key(e["id"])], now)
        self._count(2, reason)

    async def _maybe_draft_act(self, conn: AsyncConnection, e: dict, trigger: str, now: dt.datetime,
                               *, force: bool = False) -> bool:
        """Rule 18: draft the act when the start is near or passed (or `force`);
        else, at step 2, check again at start - act_lead_s."""
        if self.acts is None:
            return False
        h = await hearings_repo.get_hearing(conn, e["hearing_id"])
        if h["status"] in INACTIVE:
            return False
        lead = dt.timedelta(seconds=self.cfg.act_lead_s)
        if force or h["start_utc"] - now <= lead:
            # In a savepoint: an act that cannot be drafted must not undo the escalation
            # itself (the secretary can still draft it through the API).
            try:
                async with conn.begin_nested():
                    return await self.acts.draft_auto(conn, e["hearing_id"], trigger=trigger, now=now)
            except Exception:
                log.exception("hearing %s: the act could not be drafted", e["hearing_id"])
                await events_repo.append(conn, e["hearing_id"], "act_draft_failed", now,
                                         {"escalation_id": e["id"], "trigger": trigger})
                return False
        await jobs_repo.enqueue(conn, ACT_KIND, act_key(e["id"]), h["start_utc"] - lead, now,
                                {"escalation_id": e["id"]}, reschedule=True)
        return False

    # --- people's actions -----------------------------------------------------------------------

    async def _lock(self, conn: AsyncConnection, eid: int) -> dict:
        e = await repo.get(conn, eid)
        await hearings_repo.get_hearing(conn, e["hearing_id"], for_update=True)
        return await repo.get(conn, eid, for_update=True)

    async def ack(self, conn: AsyncConnection, eid: int, user: dict, note: str | None, now: dt.datetime) -> bool:
        """A technician acknowledges; False when this person had already (nothing is written)."""
        e = await self._lock(conn, eid)
        if e["state"] == EscalationState.RESOLVED:
            raise Conflict(f"escalation {eid} was resolved by {e['resolved_by']}")
        actions = (await repo.actions_for(conn, [eid]))[eid]
        if any(a["action"] == EscalationAction.ACK and a["by"] == user["name"] for a in actions):
            return False    # acknowledged by this person already
        values: dict[str, Any] = {"updated_at": now}
        if e["acked_at"] is None:
            values.update(acked_at=now, acked_by=user["name"])
        if e["state"] == EscalationState.OPEN:
            values["state"] = EscalationState.ACKNOWLEDGED
        await repo.update_escalation(conn, eid, **values)
        await repo.add_action(conn, eid, EscalationAction.ACK, user["name"], now, role=user["role"], note=note)
        await events_repo.append(conn, e["hearing_id"], "escalation_acknowledged", now, {
            "escalation_id": eid, "by": user["name"], "role": user["role"], "note": note})
        return True

    async def cannot_fix(self, conn: AsyncConnection, eid: int, user: dict, note: str | None,
                         now: dt.datetime) -> None:
        """Rule 17: the technician cannot remove the fault: step 2 at once, and
        the act of technical impossibility is drafted (rule 18)."""
        e = await self._lock(conn, eid)
        if e["state"] == EscalationState.RESOLVED:
            raise Conflict(f"escalation {eid} was resolved by {e['resolved_by']}")
        if e["state"] == EscalationState.CANNOT_FIX:
            raise Conflict(f"escalation {eid} was marked cannot fix by {e['cannot_fix_by']}")
        await repo.update_escalation(conn, eid, state=EscalationState.CANNOT_FIX, cannot_fix_at=now,
                                     cannot_fix_by=user["name"], acked_at=e["acked_at"] or now,
                                     acked_by=e["acked_by"] or user["name"], updated_at=now)
        await repo.add_action(conn, eid, EscalationAction.CANNOT_FIX, user["name"], now, role=user["role"], note=note)
        await events_repo.append(conn, e["hearing_id"], "escalation_cannot_fix", now, {
            "escalation_id": eid, "by": user["name"], "role": user["role"], "note": note})
        if e["step"] == 1:
            await self._to_step2(conn, e, "cannot_fix", user["name"], now)
        await self._maybe_draft_act(conn, e, "cannot_fix", now, force=True)

    async def resolve(self, conn: AsyncConnection, eid: int, user: dict | None, note: str | None,
                      now: dt.datetime) -> None:
        e = await self._lock(conn, eid)
        if e["state"] == EscalationState.RESOLVED:
            raise Conflict(f"escalation {eid} was resolved by {e['resolved_by']}")
        await self._resolve(conn, e, user["name"] if user else "system", user["role"] if user else None, note, now)

    async def _resolve(self, conn: AsyncConnection, e: dict, by: str, role: str | None, note: str | None,
                       now: dt.datetime) -> None:
        await repo.update_escalation(conn, e["id"], state=EscalationState.RESOLVED, resolved_at=now, resolved_by=by,
                                     open_key=None, updated_at=now)
        await repo.add_action(conn, e["id"], EscalationAction.RESOLVED, by, now, role=role, note=note)
        await jobs_repo.cancel(conn, [step2_key(e["id"]), act_key(e["id"])], now)
        await events_repo.append(conn, e["hearing_id"], "escalation_resolved", now, {
            "escalation_id": e["id"], "cause": e["cause"], "by": by, "note": note})

    async def auto_resolve(self, conn: AsyncConnection, hearing_id: int, cause: str, now: dt.datetime,
                           note: str, subject: str | None = None) -> int | None:
        """The fault is gone (e.g. the check passed on a later try): resolve the
        open escalation of that cause (and subject), by "system". Caller holds the hearing lock."""
        e = await repo.find_open(conn, hearing_id, cause, for_update=True, subject=subject)
        if e is None:
            return None
        await self._resolve(conn, e, "system", None, note, now)
        return e["id"]

    # --- jobs ------------------------------------------------------------------------------------

    async def job_step2(self, ctx: JobContext) -> None:
        now = ctx.now
        async with ctx.complete() as conn:
            e = await repo.get(conn, ctx.payload["escalation_id"])
            h = await hearings_repo.get_hearing(conn, e["hearing_id"], for_update=True)
            e = await repo.get(conn, e["id"], for_update=True)
            if e["state"] == EscalationState.RESOLVED or e["step"] == 2:
                return
            if h["status"] in INACTIVE:     # nothing left to fix for a hearing held or cancelled
                await self._resolve(conn, e, "system", None, f"hearing {h['status']}", now)
                return
            await self._to_step2(conn, e, "not_fixed", "system", now)
            await self._maybe_draft_act(conn, e, "not_fixed", now)
        self.wake()

    async def job_act(self, ctx: JobContext) -> None:
        """The start is near and the escalation is still not resolved: the
        start is delayed for technical reasons - draft the act (rule 18)."""
        async with ctx.complete() as conn:
            e = await repo.get(conn, ctx.payload["escalation_id"])
            await hearings_repo.get_hearing(conn, e["hearing_id"], for_update=True)
            e = await repo.get(conn, e["id"], for_update=True)
            if e["state"] != EscalationState.RESOLVED:
                await self._maybe_draft_act(conn, e, e["step2_reason"] or "not_fixed", ctx.now, force=True)

    async def job_notify(self, ctx: JobContext) -> None:
        nid = ctx.payload["notification_id"]
        async with ctx.transaction() as conn:
            n = await repo.get_notification(conn, nid)
            if n is None or n["state"] != DeliveryState.PENDING:
                return
            e = await repo.get(conn, n["escalation_id"])
            h = (await hearings_repo.views(conn, [e["hearing_id"]], ctx.now))[0]
        payload = notify.webhook_payload(notification_id=nid, escalation={**e, "opened_at": iso(e["opened_at"])},
                                         hearing=h, step=n["step"], page_url=self.cfg.page_url)
        try:
            if n["channel"] == NotificationChannel.WEBHOOK:
                await self.notifier.post_webhook(n["target"], payload)
            else:
                subject, text = notify.email_text(payload)
                await self.notifier.send_email(n["target"], subject, text, notification_id=nid)
        except notify.DeliveryError as exc:
            attempts = n["attempts"] + 1
            error = str(exc)[:2000]
            if attempts >= self.cfg.max_attempts:
                async with ctx.complete() as conn:
                    await repo.update_notification(conn, nid, state=DeliveryState.FAILED, attempts=attempts,
                                                   last_error=error)
                    await events_repo.append(conn, e["hearing_id"], "escalation_notification_failed", ctx.now, {
                        "escalation_id": e["id"], "notification_id": nid, "channel": n["channel"],
                        "attempts": attempts, "error": error})
                log.warning("notification %d given up after %d attempts: %s", nid, attempts, error)
                return
            retry_at = ctx.now + dt.timedelta(seconds=backoff_s(attempts, self.cfg.retry_initial_s,
                                                                self.cfg.retry_max_s, spread=RETRY_SPREAD))
            async with ctx.complete(retry_at=retry_at, error=error) as conn:
                await repo.update_notification(conn, nid, attempts=attempts, last_error=error)
            log.info("notification %d not delivered (%s); retry at %s", nid, error, iso(retry_at))
            return
        async with ctx.complete() as conn:
            await repo.update_notification(conn, nid, state=DeliveryState.SENT, attempts=n["attempts"] + 1,
                                           sent_at=ctx.now, last_error=None)

    # --- reading ---------------------------------------------------------------------------------

    async def views(self, conn: AsyncConnection, rows: list[dict], now: dt.datetime) -> list[dict]:
        ids = [e["id"] for e in rows]
        actions = await repo.actions_for(conn, ids)
        notes = await repo.notifications_for(conn, ids)
        hids = sorted({e["hearing_id"] for e in rows})
        hearings = {h["id"]: h for h in await hearings_repo.views(conn, hids, now)}
        return [escalation_view(e, actions[e["id"]], notes[e["id"]], hearings.get(e["hearing_id"]),
                                self.cfg.step2_after_s) for e in rows]

    async def view(self, conn: AsyncConnection, eid: int, now: dt.datetime) -> dict:
        return (await self.views(conn, [await repo.get(conn, eid)], now))[0]


ESCALATIONS_KEY = web.AppKey("escalations", EscalationService)
NOTIFIER_KEY = web.AppKey("notifier", notify.Notifier)
ACTS_KEY = web.AppKey("acts", ActService)
