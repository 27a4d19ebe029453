"""Delivering escalation notifications (rules 16, 17): webhooks and e-mail.

Pure part: `webhook_payload(...)` and `email_text(...)` build what is sent
from an escalation and its hearing (no I/O). Edge part: `Notifier` posts a
webhook (aiohttp) or sends an e-mail (aiosmtplib) and raises `DeliveryError`
when it did not get through; the caller (controller.escalation, from a durable
job) decides to retry later.

Delivery is at least once: a controller that dies after sending but before
recording it sends again. Each message carries a stable id (`notification_id`
in the JSON, the `Message-ID` and `X-VKS-Notification` of the e-mail) so a
receiver can drop a repeat.

Authenticity: with `escalation.webhook_secret` set, each webhook carries
`X-VKS-Signature: sha256=<HMAC-SHA256 of the body>`.

Headers: the API refuses multi-line names and case numbers (controller.models.OneLine); whatever
text reaches a header here anyway (older rows, the sites file) goes through `header_text`, so no
value can end a header and start another.

Secrets: the SMTP password and the webhook secret are `SecretStr`s, never
logged or put in an error message.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from email.message import EmailMessage
from typing import Any

import aiohttp

from contract import reasons
from controller.settings import ControllerSettings

log = logging.getLogger(__name__)

SCHEMA = "vks.escalation/1"

CAUSE_TEXT = {
    "test_failed": ("тестілеу сеансы сәтсіз аяқталды (13-тармақ)", "тестовый сеанс не пройден (п. 13)"),
    "preconnect_failed": ("алдын ала қосылу сәтсіз аяқталды (15-тармақ)",
                          "предварительное подключение не удалось (п. 15)"),
    "reconnect_failed": ("үзілістен кейін қайта қосылу сәтсіз (22-тармақ)",
                         "переподключение после перерыва не удалось (п. 22)"),
    "agent_offline": ("терминал байланыста жоқ", "терминал не на связи"),
    "terminal_unhealthy": ("терминалдың жабдығы ақаулы (14-тармақ)", "оборудование терминала неисправно (п. 14)"),
    "test_retries_failed": ("тестілеу сеансы қайталаулардан кейін де сәтсіз (13-тармақ)",
                            "тестовый сеанс не пройден и после повторов (п. 13)"),
    "manual": ("хатшы хабарлады", "сообщено секретарём"),
}
STEP_TEXT = {
    1: ("Техникалық мамандарға хабарлама (16-тармақ)", "Оповещение технических специалистов (п. 16)"),
    2: ("Ұйымдастырушы сотқа / мекемеге хабарлама (17-тармақ)",
        "Оповещение суда / учреждения, организующего ВКС (п. 17)"),
}
STEP2_REASON_TEXT = {
    "not_fixed": ("ақау белгіленген уақытта жойылмады", "неисправность не устранена в установленное время"),
    "cannot_fix": ("техникалық маман ақауды жою мүмкін емес екенін хабарлады",
                   "технический специалист сообщил, что устранить неисправность невозможно"),
}


class DeliveryError(Exception):
    """The notification did not get through (endpoint down, refused, timed out);
    it may be retried later."""


def header_text(text: str) -> str:
    """Text made safe for one e-mail header: each control character or line/paragraph separator
    (CR, LF, tab, NUL, U+2028...) becomes a space, runs of spaces one space."""
    flat = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return re.sub(r" {2,}", " ", flat).strip()


def signature(secret: str, body: bytes) -> str:
    """The X-VKS-Signature header of a webhook: "sha256=" + HMAC-SHA256(body) in hex."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def level(step: int) -> str:
    """The metrics' and payloads' name of a step: technicians (1) or organiser (2)."""
    return "technicians" if step == 1 else "organiser"


def webhook_payload(*, notification_id: int, escalation: dict, hearing: dict, step: int,
                    page_url: str | None = None) -> dict[str, Any]:
    """The JSON a webhook receives (schema vks.escalation/1)."""
    kk, ru = CAUSE_TEXT.get(escalation["cause"], (escalation["cause"], escalation["cause"]))
    out = {
        "schema": SCHEMA,
        "notification_id": notification_id,
        "escalation_id": escalation["id"],
        "step": step,
        "level": level(step),
        "cause": escalation["cause"],
        "cause_text": {"kk": kk, "ru": ru},
        "state": escalation["state"],
        "step2_reason": escalation.get("step2_reason"),
        "opened_at": escalation["opened_at"],
        "detail": escalation.get("detail") or {},
        "hearing": {
            "id": hearing["id"], "case_number": hearing["case_number"],
            "court": {"id": hearing["court"]["id"], "name": hearing["court"]["name"]},
            "room": hearing["room"]["name"], "start_utc": hearing["start_utc"],
            "start_local": hearing["start_local"],
            "participants": [{"institution_id": p["institution_id"], "institution_name": p["institution_name"],
                              "terminal_id": p["terminal_id"]} for p in hearing["participants"]],
        },
    }
    codes = (escalation.get("detail") or {}).get("reason_codes") or []
    if codes:       # what the failed check found, in words (the codes stay in `detail` for a program)
        names = terminal_names(out)
        out["reason_text"] = {lang: [reasons.text(rc, lang, names=names) for rc in codes] for lang in ("kk", "ru")}
    if page_url:
        out["url"] = page_url.rstrip("/") + "/#escalations"      # the web page's escalations view
    return out


def _local_text(iso_local: str) -> str:
    """"2026-12-01T11:00:00+05:00" -> "01.12.2026 11:00 (UTC+05:00)"."""
    try:
        t = dt.datetime.fromisoformat(iso_local)
    except ValueError:
        return iso_local
    off = t.strftime("%z")
    return f"{t:%d.%m.%Y %H:%M}" + (f" (UTC{off[:3]}:{off[3:]})" if len(off) == 5 else "")


def terminal_names(payload: dict[str, Any]) -> dict[str, str]:
    """{caller, callee: a name a reader knows} for the check an escalation is about: a participant's
    terminal by its institution, the court's own by the court and its room."""
    h, detail = payload["hearing"], payload.get("detail") or {}
    by_terminal = {p["terminal_id"]: p["institution_name"] for p in h["participants"]}
    court = f"{h['court']['name']}, {h['room']}"
    return {role: by_terminal.get(detail[role], court) for role in ("caller", "callee") if detail.get(role)}


def detail_lines(payload: dict[str, Any], lang: str) -> list[str]:
    """What the failed check found, in `lang`: the terminals, the verdict and each reason as the
    payload's `reason_text` gives it (rendered from the catalog of reason codes, contract.reasons);
    a report without codes gives its English reasons as they are; an error as it came."""
    detail = payload.get("detail") or {}
    i = ("kk", "ru").index(lang)
    names = terminal_names(payload)
    lines = []
    if names.get("caller") and names.get("callee"):
        lines.append(f"  {('Терминалдар', 'Терминалы')[i]}: {names['caller']} → {names['callee']}")
    if detail.get("verdict"):
        lines.append(f"  {('Қорытынды', 'Заключение')[i]}: "
                     f"{reasons.word(reasons.ParamKind.LEVEL, detail['verdict'], lang)}")
    shown = (payload.get("reason_text") or {}).get(lang) or list(detail.get("reasons") or [])
    lines += [f"  - {r}" for r in shown]
    if detail.get("error"):
        lines.append(f"  {('Қате', 'Ошибка')[i]}: {detail['error']}")
    return lines


def email_text(payload: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the e-mail, in Kazakh and Russian, from a webhook payload."""
    h = payload["hearing"]
    step_kk, step_ru = STEP_TEXT[payload["step"]]
    start = _local_text(h["start_local"])
    subject = header_text(f"[ВКС] {step_ru}: {h['case_number']}, {h['court']['name']}, {start}")
    parts = ", ".join(f"{p['institution_name']} ({p['terminal_id']})" for p in h["participants"])
    reason = STEP2_REASON_TEXT.get(payload.get("step2_reason") or "")
    lines = []
    for i, lang in enumerate(("kk", "ru")):
        lines += [
            (step_kk, step_ru)[i],
            f"{('Іс', 'Дело')[i]}: {h['case_number']}",
            f"{('Сот', 'Суд')[i]}: {h['court']['name']}, {h['room']}",
            f"{('Басталуы', 'Начало')[i]}: {start}",
            f"{('Қатысушылар', 'Участники')[i]}: {parts}",
            f"{('Себебі', 'Причина')[i]}: {payload['cause_text'][lang]}",
        ]
        if reason:
            lines.append(f"{('2-саты', 'Шаг 2')[i]}: {reason[i]}")
        lines += detail_lines(payload, lang)
        lines.append("")
    if payload.get("url"):
        lines.append(payload["url"])
    lines.append(f"escalation {payload['escalation_id']}, notification {payload['notification_id']}")
    return subject, "\n".join(lines) + "\n"


class Notifier:
    """Posts webhooks and sends e-mail. `start()` opens the HTTP client session
    (in the app's cleanup_ctx), `close()` is idempotent."""

    def __init__(self, settings: ControllerSettings):
        self.esc = settings.escalation
        self.smtp = settings.smtp
        self._session: aiohttp.ClientSession | None = None

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp.host)

    async def start(self) -> aiohttp.ClientSession:
        """The HTTP client session, opened on first use."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.esc.webhook_timeout_s))
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post_webhook(self, url: str, payload: dict[str, Any]) -> None:
        """POST the payload as JSON (signed when a secret is set); DeliveryError unless 2xx."""
        session = await self.start()
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-VKS-Notification": str(payload["notification_id"])}
        if self.esc.webhook_secret is not None:
            headers["X-VKS-Signature"] = signature(self.esc.webhook_secret.get_secret_value(), body)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise DeliveryError(f"webhook {url} answered HTTP {resp.status}")
        except DeliveryError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"webhook {url}: {type(exc).__name__}: {exc}") from None

    async def send_email(self, to: str, subject: str, body: str, *, notification_id: int | str) -> None:
        if not self.email_enabled:
            raise DeliveryError("e-mail is off (smtp.host is not set)")
        import aiosmtplib  # imported here: only a controller with SMTP configured needs it

        msg = EmailMessage()
        msg["From"] = self.smtp.from_addr
        msg["To"] = header_text(to)
        msg["Subject"] = header_text(subject)
        domain = self.smtp.from_addr.rpartition("@")[2] or "localhost"
        msg["Message-ID"] = f"<vks-notification-{notification_id}@{domain}>"
        msg["X-VKS-Notification"] = str(notification_id)
        msg.set_content(body)
        s = self.smtp
        try:
            await aiosmtplib.send(
                msg, hostname=s.host, port=s.port, timeout=s.timeout_s,
                use_tls=s.security == "tls", start_tls=True if s.security == "starttls" else False,
                username=s.username, password=s.password.get_secret_value() if s.password else None)
        except (aiosmtplib.SMTPException, TimeoutError, OSError) as exc:
            raise DeliveryError(f"e-mail to {to} via {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
