"""The coordinators' agreements (rules 11, 12): who is told, and when an agreement is reset.

- A hearing is scheduled: its agreement is pending and the coordinator who gives it is told
  (event `agreement_requested`, why "scheduled").
- Its date or time changes: an agreement given is reset to pending (event `agreement_reset`: who
  had given it, the new start) and the coordinator is told again; one still pending is asked again
  (event `agreement_requested`, why "date_changed"). Any other change (case number, room,
  participants) leaves the agreement as it is.

Who is told: the contacts of kind "coordinator" (contract.vocab.ContactKind) of the hearing's
court - the coordinator who agrees that court's hearings (the regional one for district and
regional courts, the Department's for the Supreme Court), entered like the escalations' contacts
(`POST /api/v1/institutions/{id}/contacts`, `vks-controller contact add --kind coordinator`): their
webhook, and their e-mail when SMTP is configured.

Delivery is durable and at least once, like the escalations': the event's transaction enqueues one
job (`agreement.notify`) that, when it runs, enqueues a delivery job per target
(`agreement.deliver`, key `agreement:{event id}:{channel}:{target}`); a delivery that does not
get through is retried by the scheduler with backoff. Each message carries `notification_id`
"agreement-{event id}-{job id}" (the e-mail's Message-ID too) so a receiver can drop a repeat.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import AgreementState, ContactKind, NotificationChannel
from controller import notify
from controller.scheduler import JobContext, Scheduler
from controller.settings import ControllerSettings
from controller.store import escalations as contacts_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import jobs as jobs_repo
from controller.store.hearings import iso

log = logging.getLogger(__name__)

NOTIFY_KIND = "agreement.notify"
DELIVER_KIND = "agreement.deliver"
SCHEMA = "vks.agreement/1"

WHY_TEXT = {
    "scheduled": ("Сот отырысының күні мен уақытын келісу қажет (11, 12-т.)",
                  "Требуется согласование даты и времени заседания (пп. 11, 12)"),
    "date_changed": ("Сот отырысының күні немесе уақыты өзгерді: келісу қажет (11, 12-т.)",
                     "Дата или время заседания изменены: требуется согласование (пп. 11, 12)"),
    "reset": ("Сот отырысының күні немесе уақыты өзгерді: берілген келісім күшін жойды, қайта келісу қажет",
              "Дата или время заседания изменены: данное согласование снято, требуется новое"),
}


async def _tell(conn: AsyncConnection, hid: int, kind: str, detail: dict[str, Any], now: dt.datetime) -> None:
    eid = await events_repo.append(conn, hid, kind, now, detail)
    await jobs_repo.enqueue(conn, NOTIFY_KIND, f"agreement:{eid}", now, now,
                            {"hearing_id": hid, "event_id": eid, "why": detail["why"]})


async def requested(conn: AsyncConnection, hid: int, now: dt.datetime) -> None:
    """A hearing was scheduled (in the caller's transaction): tell its coordinator."""
    h = await hearings_repo.get_hearing(conn, hid)
    await _tell(conn, hid, "agreement_requested", {"why": "scheduled", "coordinator": h["agreement_coordinator"],
                                                   "start_utc": iso(h["start_utc"])}, now)


async def date_changed(conn: AsyncConnection, hid: int, who: str, now: dt.datetime) -> None:
    """The hearing's date or time changed (in the caller's transaction, the hearing row locked): an
    agreement given is reset to pending; the coordinator is told either way."""
    h = await hearings_repo.get_hearing(conn, hid)
    detail: dict[str, Any] = {"by": who, "coordinator": h["agreement_coordinator"], "start_utc": iso(h["start_utc"])}
    if h["agreement_state"] == AgreementState.GIVEN:
        await hearings_repo.update_hearing(conn, hid, agreement_state=AgreementState.PENDING, agreement_by=None,
                                           agreement_at=None, updated_at=now)
        await _tell(conn, hid, "agreement_reset", {**detail, "why": "reset", "given_by": h["agreement_by"],
                                                   "given_at": iso(h["agreement_at"])}, now)
    else:
        await _tell(conn, hid, "agreement_requested", {**detail, "why": "date_changed"}, now)


def payload(*, notification_id: str, why: str, hearing: dict, page_url: str | None) -> dict[str, Any]:
    """The JSON a webhook receives (schema vks.agreement/1)."""
    kk, ru = WHY_TEXT.get(why, (why, why))
    out: dict[str, Any] = {
        "schema": SCHEMA, "notification_id": notification_id, "why": why, "text": {"kk": kk, "ru": ru},
        "agreement": hearing["agreement"],
        "hearing": {"id": hearing["id"], "case_number": hearing["case_number"],
                    "court": {"id": hearing["court"]["id"], "name": hearing["court"]["name"]},
                    "room": hearing["room"]["name"], "start_utc": hearing["start_utc"],
                    "start_local": hearing["start_local"], "verdict": hearing["verdict"],
                    "participants": [{"institution_id": p["institution_id"],
                                      "institution_name": p["institution_name"], "terminal_id": p["terminal_id"]}
                                     for p in hearing["participants"]]},
    }
    if page_url:
        out["url"] = page_url.rstrip("/") + "/#agreements"
    return out


def email_text(p: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the e-mail, in Kazakh and Russian."""
    h = p["hearing"]
    start = notify._local_text(h["start_local"])
    subject = notify.header_text(f"[ВКС] {p['text']['ru']}: {h['case_number']}, {h['court']['name']}, {start}")
    parts = ", ".join(f"{x['institution_name']} ({x['terminal_id']})" for x in h["participants"])
    lines: list[str] = []
    for i, lang in enumerate(("kk", "ru")):
        lines += [p["text"][lang], f"{('Іс', 'Дело')[i]}: {h['case_number']}",
                  f"{('Сот', 'Суд')[i]}: {h['court']['name']}, {h['room']}",
                  f"{('Басталуы', 'Начало')[i]}: {start}", f"{('Қатысушылар', 'Участники')[i]}: {parts}", ""]
    if p.get("url"):
        lines.append(p["url"])
    lines.append(f"notification {p['notification_id']}")
    return subject, "\n".join(lines) + "\n"


class AgreementNotices:
    """The two job kinds that tell coordinators (registered on the controller's scheduler)."""

    def __init__(self, settings: ControllerSettings, notifier: notify.Notifier):
        self.settings = settings
        self.notifier = notifier
        self.wake = lambda: None

    def register(self, scheduler: Scheduler) -> None:
        scheduler.register(NOTIFY_KIND, self.job_notify)
        scheduler.register(DELIVER_KIND, self.job_deliver)
        self.wake = scheduler.wake

    async def job_notify(self, ctx: JobContext) -> None:
        """Resolve the coordinator contacts of the hearing's court; a delivery job per target."""
        p = ctx.payload
        async with ctx.complete() as conn:
            h = await hearings_repo.get_hearing(conn, p["hearing_id"])
            contacts = [c for c in await contacts_repo.list_contacts(conn, [h["court_id"]])
                        if c["kind"] == ContactKind.COORDINATOR]
            targets: list[tuple[str, str]] = []
            for c in contacts:
                if c.get("webhook_url"):
                    targets.append((NotificationChannel.WEBHOOK, c["webhook_url"]))
                if c.get("email") and self.notifier.email_enabled:
                    targets.append((NotificationChannel.EMAIL, c["email"]))
            for channel, target in dict.fromkeys(targets):
                await jobs_repo.enqueue(conn, DELIVER_KIND, f"agreement:{p['event_id']}:{channel}:{target}",
                                        ctx.now, ctx.now, {**p, "channel": channel, "target": target})
        self.wake()

    async def job_deliver(self, ctx: JobContext) -> None:
        """Send one message; a DeliveryError leaves the job to the scheduler's retry with backoff."""
        p = ctx.payload
        async with ctx.transaction() as conn:
            views = await hearings_repo.views(conn, [p["hearing_id"]], ctx.now)
        if not views:
            return
        nid = f"agreement-{p['event_id']}-{ctx.job['id']}"
        msg = payload(notification_id=nid, why=p["why"], hearing=views[0],
                      page_url=self.settings.escalation.page_url)
        if p["channel"] == NotificationChannel.WEBHOOK:
            await self.notifier.post_webhook(p["target"], msg)
        else:
            subject, text = email_text(msg)
            await self.notifier.send_email(p["target"], subject, text, notification_id=nid)
        log.info("agreement notice %s sent to %s %s", nid, p["channel"], p["target"])
