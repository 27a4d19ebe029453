"""The act of technical impossibility (rule 18): drafted with the measured
evidence, in Kazakh and Russian, for three signatures, attached to the hearing.

- `build_content(conn, hearing_id, ...)` gathers the act's content as data
  (schema vks.act/1): the hearing (court, room, case, date and time in the
  court's local time), the reason, the timeline from the event record, the
  escalations (who was told and who answered), the measured evidence of the
  test session and the pre-connect check (loss, jitter, RTT, MOS, verdict and
  reasons per terminal pair) and the breaks of the live monitoring (rule 22).
  The content is stored with the act, so its documents are reproducible.
- `render_html(act, lang)` (Jinja2, autoescape on) and `render_pdf(act, lang)`
  (reportlab) give the printable act; `lang` ("kk" or "ru") says which of the
  two languages comes first - both are always there.
- `ActService`: `draft` (the secretary asks), `draft_auto` (the escalation
  reached step 2 near the start, or a technician marked "cannot fix"), `sign`
  (head of the court office, secretary, technical specialist; once the three
  have signed the act is final: sealed by `final_sha256` over content and
  signatures, with the sha256 of each final document, and never changed again).

PDF library: reportlab - well kept, pure Python with a small C accelerator, no
browser or system libraries needed, embeds TrueType fonts; with the DejaVu
fonts (Debian fonts-dejavu-core) it renders Cyrillic and the Kazakh letters
ә ғ қ ң ө ұ ү һ і. Its `invariant` mode makes the same act give the same bytes.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.store import acts as repo
from controller.store import checks as checks_repo
from controller.store import escalations as esc_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import live as live_repo
from controller.store import users as users_repo
from controller.store.hearings import iso

SCHEMA = "vks.act/1"
LANGS = ("kk", "ru")
SIGNER_ROLES = repo.SIGNER_ROLES
TRIGGERS = ("not_fixed", "cannot_fix", "requested")
# Which user roles may record which signature: the secretary records the head
# of the office's and their own; the technical specialist their own; admin any.
MAY_SIGN = {"head_of_office": {"secretary", "admin"}, "secretary": {"secretary", "admin"},
            "technician": {"technician", "admin"}}
TEMPLATES = Path(__file__).resolve().parent / "templates"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/local/share/fonts/dejavu"))

T: dict[str, dict[str, str]] = {
    "kk": {
        "title": "Бейнеконференцбайланыс құралдарын қолданудың техникалық мүмкіндігінің болмағаны туралы АКТ",
        "draft": "ЖОБА", "final": "Түпкілікті", "court": "Сот", "room": "Сот отырысының залы",
        "case": "Іс нөмірі", "start": "Сот отырысының күні мен уақыты", "participants": "ВКС арқылы қатысушы",
        "drafted": "Акт жасалған уақыты", "reason": "Себебі", "timeline": "Оқиғалар хронологиясы",
        "evidence": "Өлшенген көрсеткіштер", "escalations": "Хабарламалар (16, 17-тармақтар)",
        "breaks": "Техникалық үзілістер (22-тармақ)", "signatures": "Қолдар", "note": "Ескертпе",
        "when": "Уақыты", "event": "Оқиға", "check": "Тексеру", "pair": "Терминалдар", "loss": "Жоғалту",
        "jitter": "Джиттер", "rtt": "RTT", "mos": "MOS", "verdict": "Қорытынды", "reasons": "Себептер",
        "none": "жоқ", "signature": "қолы", "date": "күні", "signed": "қол қойды",
        "sha": "Мазмұнның SHA-256 хэші", "status": "Мәртебесі", "cause": "Себеп", "opened": "Ашылды",
        "step2": "2-саты", "acked": "Қабылдады", "cannot_fix": "Жою мүмкін емес", "resolved": "Жойылды",
        "out": "шығыс", "in": "кіріс", "duration": "Ұзақтығы", "outcome": "Нәтижесі",
        "statement": "Осы акт Бейнеконференцбайланыс құралдарын техникалық қолдану қағидаларының 18-тармағына "
                     "сәйкес жасалды: техникалық ақауларды жою мүмкін болмады, сот отырысын "
                     "бейнеконференцбайланыс арқылы уақытында өткізу мүмкін емес.",
        "check_test": "Тестілеу сеансы (13-т.)", "check_preconnect": "Алдын ала қосылу (15-т.)",
        "head_of_office": "Кеңсе меңгерушісі", "secretary": "Сот отырысының хатшысы",
        "technician": "Техникалық маман",
        "trigger_not_fixed": "Ақаулар белгіленген уақыт ішінде жойылмады; сот отырысының басталуы кешіктірілді.",
        "trigger_cannot_fix": "Техникалық маман ақауларды жою мүмкін емес екенін хабарлады.",
        "trigger_requested": "Акт сот отырысы хатшысының талабы бойынша жасалды.",
        "good": "жақсы", "degraded": "нашарлаған", "unusable": "жарамсыз",
    },
    "ru": {
        "title": "АКТ об отсутствии технической возможности использования средств видеоконференцсвязи",
        "draft": "ПРОЕКТ", "final": "Окончательный", "court": "Суд", "room": "Зал судебного заседания",
        "case": "Номер дела", "start": "Дата и время судебного заседания", "participants": "Участник по ВКС",
        "drafted": "Акт составлен", "reason": "Причина", "timeline": "Хронология событий",
        "evidence": "Измеренные показатели", "escalations": "Оповещения (пп. 16, 17)",
        "breaks": "Технические перерывы (п. 22)", "signatures": "Подписи", "note": "Примечание",
        "when": "Время", "event": "Событие", "check": "Проверка", "pair": "Терминалы", "loss": "Потери",
        "jitter": "Джиттер", "rtt": "RTT", "mos": "MOS", "verdict": "Заключение", "reasons": "Причины",
        "none": "нет", "signature": "подпись", "date": "дата", "signed": "подписал(а)",
        "sha": "Хэш содержимого SHA-256", "status": "Статус", "cause": "Причина", "opened": "Открыто",
        "step2": "Шаг 2", "acked": "Принял(а)", "cannot_fix": "Устранить невозможно", "resolved": "Устранено",
        "out": "исх.", "in": "вх.", "duration": "Длительность", "outcome": "Итог",
        "statement": "Настоящий акт составлен в соответствии с пунктом 18 Правил технического использования "
                     "средств видеоконференцсвязи: технические неисправности устранить не удалось, провести "
                     "судебное заседание посредством видеоконференцсвязи в назначенное время невозможно.",
        "check_test": "Тестовый сеанс (п. 13)", "check_preconnect": "Предварительное подключение (п. 15)",
        "head_of_office": "Заведующий канцелярией", "secretary": "Секретарь судебного заседания",
        "technician": "Технический специалист",
        "trigger_not_fixed": "Неисправности не устранены в установленное время; начало судебного заседания "
                             "задерживается.",
        "trigger_cannot_fix": "Технический специалист сообщил, что устранить неисправности невозможно.",
        "trigger_requested": "Акт составлен по требованию секретаря судебного заседания.",
        "good": "хорошее", "degraded": "ухудшенное", "unusable": "непригодное",
    },
}

EVENT_TEXT: dict[str, tuple[str, str]] = {
    "hearing_scheduled": ("Сот отырысы тағайындалды", "Заседание назначено"),
    "hearing_updated": ("Сот отырысы өзгертілді", "Заседание изменено"),
    "test_request_created": ("Тестілеу сеансына өтінім жасалды", "Создана заявка на тестовый сеанс"),
    "preconnect_scheduled": ("Алдын ала қосылу жоспарланды", "Запланировано предварительное подключение"),
    "check_requested": ("Тексеру қайта сұралды", "Проверка запрошена повторно"),
    "check_started": ("Тексеру басталды", "Проверка начата"),
    "check_result": ("Тексеру нәтижесі", "Результат проверки"),
    "check_failed": ("Тексеру сәтсіз аяқталды", "Проверка не удалась"),
    "check_retry": ("Тексеру қайталанады", "Повтор проверки"),
    "check_overdue": ("Тексеру мерзімі өтті", "Срок проверки истёк"),
    "escalation_opened": ("Техникалық мамандарға хабарланды (16-т.)", "Оповещены технические специалисты (п. 16)"),
    "escalation_acknowledged": ("Хабарлама қабылданды", "Оповещение принято"),
    "escalation_cannot_fix": ("Ақауды жою мүмкін емес", "Устранить неисправность невозможно"),
    "escalation_step2": ("Ұйымдастырушы сотқа / мекемеге хабарланды (17-т.)",
                         "Оповещены суд / учреждение, организующие ВКС (п. 17)"),
    "escalation_resolved": ("Ақау жойылды", "Неисправность устранена"),
    "act_drafted": ("Акт жобасы жасалды", "Составлен проект акта"),
    "act_signed": ("Акт қол қойылды", "Акт подписан"),
    "act_final": ("Акт түпкілікті", "Акт окончательный"),
    "act_draft_failed": ("Акт жобасын жасау мүмкін болмады", "Не удалось составить проект акта"),
    "escalation_notification_failed": ("Хабарлама жеткізілмеді", "Оповещение не доставлено"),
    "monitoring_started": ("Байланыс мониторингі басталды", "Начат контроль связи"),
    "monitoring_renewed": ("Мониторинг сеансы жаңартылды", "Сеанс контроля обновлён"),
    "break": ("Техникалық себептермен үзіліс (22-т.)", "Перерыв по техническим причинам (п. 22)"),
    "reconnect": ("Қайта қосылу", "Переподключение"),
    "reconnect_attempt_failed": ("Қайта қосылу әрекеті сәтсіз", "Попытка переподключения не удалась"),
    "reconnect_timeout": ("Қайта қосылу уақытында болмады", "Переподключение не удалось в срок"),
    "ready_to_resume": ("Жалғастыруға дайын", "Готово к продолжению"),
    "ready_withdrawn": ("Жалғастыруға дайындық жойылды", "Готовность к продолжению отозвана"),
    "resume": ("Сот отырысы жалғастырылды", "Заседание продолжено"),
    "monitoring_stopped": ("Байланыс мониторингі тоқтатылды", "Контроль связи остановлен"),
    "hook_failed": ("Терминалға хабарлау сәтсіз", "Не удалось оповестить терминал"),
    "hearing_started": ("Сот отырысы басталды", "Заседание начато"),
    "hearing_ended": ("Сот отырысы аяқталды", "Заседание окончено"),
    "hearing_cancelled": ("Сот отырысы тоқтатылды", "Заседание отменено"),
    "agreement_given": ("Келісім берілді (11, 12-т.)", "Согласование дано (пп. 11, 12)"),
    "check_blocked": ("Тексеру бұғатталды (24-т.)", "Проверка заблокирована (п. 24)"),
    "check_unblocked": ("Тексеру бұғаттан шығарылды", "Проверка разблокирована"),
    "suspended": ("ВКС тоқтатылды (24-т.)", "ВКС приостановлена (п. 24)"),
    "suspension_lifted": ("Тоқтата тұру алынып тасталды", "Приостановление снято"),
}
CAUSE_TEXT = {
    "test_failed": ("тестілеу сеансы сәтсіз", "тестовый сеанс не пройден"),
    "preconnect_failed": ("алдын ала қосылу сәтсіз", "предварительное подключение не удалось"),
    "reconnect_failed": ("қайта қосылу сәтсіз", "переподключение не удалось"),
    "agent_offline": ("терминал байланыста жоқ", "терминал не на связи"),
    "manual": ("қолмен", "вручную"),
}
# Detail keys worth showing in the timeline, in this order.
DETAIL_KEYS = ("kind", "callee", "verdict", "reasons", "mos", "status", "error", "cause", "reason", "by", "note",
               "deadline", "attempt", "attempts", "duration_s", "role", "name")


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sha256(data: Any) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def _local(t: dt.datetime | None, tz: str) -> str | None:
    if t is None:
        return None
    try:
        return t.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M:%S")
    except Exception:
        return t.astimezone(dt.UTC).strftime("%d.%m.%Y %H:%M:%S UTC")


def _offset(t: dt.datetime, tz: str) -> str:
    z = t.astimezone(ZoneInfo(tz)).strftime("%z")      # +0500
    return f"{z[:3]}:{z[3:]}" if len(z) == 5 else z


def _num(v: Any, fmt: str) -> str | None:
    return None if v is None else fmt.format(v)


def _summary(detail: dict, tz: str) -> str:
    parts = []
    for k in DETAIL_KEYS:
        v = detail.get(k)
        if v in (None, "", []):
            continue
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, str) and len(v) == 20 and v.endswith("Z") and v[10] == "T":
            try:       # a UTC time of the record: shown in the court's local time like the rest
                v = _local(dt.datetime.fromisoformat(v.replace("Z", "+00:00")), tz)
            except ValueError:
                pass
        parts.append(f"{k}: {v}")
    return "; ".join(parts)[:400]


def check_evidence(c: dict, tz: str) -> dict[str, Any]:
    """One test / pre-connect check's measured figures (from the agents' report)."""
    r = c.get("result") or {}
    out, inn = r.get("outbound") or {}, r.get("inbound") or {}
    rtt = r.get("rtt_ms") or {}
    return {
        "kind": c["kind"], "caller": c["caller"], "callee": c["callee"], "status": c["status"],
        "verdict": c["verdict"], "attempts": c["attempts"], "finished_local": _local(c["finished_at"], tz),
        "connected": r.get("connected") if r else None, "error": c.get("error") or r.get("error"),
        "loss_out": _num(out.get("loss_ratio") * 100 if out.get("loss_ratio") is not None else None, "{:.2f} %"),
        "loss_in": _num(inn.get("loss_ratio") * 100 if inn.get("loss_ratio") is not None else None, "{:.2f} %"),
        "jitter_out": _num(out.get("jitter_ms"), "{:.1f} ms"), "jitter_in": _num(inn.get("jitter_ms"), "{:.1f} ms"),
        "rtt_mean": _num(rtt.get("mean"), "{:.0f} ms"), "rtt_p95": _num(rtt.get("p95"), "{:.0f} ms"),
        "mos": _num(r.get("mos"), "{:.2f}"), "reasons": [str(x) for x in (r.get("reasons") or [])],
    }


def live_figures(rows: list[dict]) -> dict[str, Any]:
    """What the agents measured each second around a break (live_intervals rows of
    both terminals): worst loss and jitter received, mean RTT, stalled seconds and
    the verdicts of the seconds."""
    loss = [d["loss_ratio"] for r in rows for d in (r.get("inbound") or {},) if d.get("loss_ratio") is not None]
    jit = [d["jitter_ms"] for r in rows for d in (r.get("inbound") or {},) if d.get("jitter_ms") is not None]
    rtt = [r["rtt_ms"] for r in rows if r.get("rtt_ms") is not None]
    verdicts: dict[str, int] = {}
    for r in rows:
        v = "stalled" if r.get("stalled") else r.get("verdict") or "?"
        verdicts[v] = verdicts.get(v, 0) + 1
    return {"seconds": len(rows), "loss_max": _num(max(loss) * 100 if loss else None, "{:.1f} %"),
            "jitter_max": _num(max(jit) if jit else None, "{:.1f} ms"),
            "rtt_mean": _num(sum(rtt) / len(rtt) if rtt else None, "{:.0f} ms"),
            "verdicts": ", ".join(f"{k} {n}" for k, n in sorted(verdicts.items()))}


def _break_evidence(b: dict, tz: str, rows: list[dict]) -> dict[str, Any]:
    ev = b.get("evidence") or {}
    keep = ("kind", "role", "stalled_s", "unusable", "window_s")
    parts = [f"{k}: {ev[k]}" for k in keep if ev.get(k) not in (None, "", [])]
    if ev.get("reasons"):
        parts.append("reasons: " + ", ".join(str(x) for x in ev["reasons"]))
    live = live_figures(rows)
    if live["seconds"]:
        parts.append(f"loss max {live['loss_max'] or '—'}, jitter max {live['jitter_max'] or '—'}, "
                     f"RTT {live['rtt_mean'] or '—'}; {live['verdicts']}")
    return {"cause": b["cause"], "started_local": _local(b["started_at"], tz),
            "ended_local": _local(b.get("ended_at"), tz), "duration_s": b.get("duration_s"),
            "attempts": b.get("attempts"), "outcome": b.get("outcome"), "live": live,
            "figures": "; ".join(parts)[:600]}


async def _breaks(conn: AsyncConnection, hearing_id: int, tz: str) -> list[dict]:
    """The breaks of the live monitoring (rule 22) with the figures measured in
    the detector's window before each (while the intervals are still kept)."""
    out = []
    for b in await live_repo.breaks_for(conn, hearing_id):
        window = dt.timedelta(seconds=float((b.get("evidence") or {}).get("window_s") or 10))
        rows = [r for r in await live_repo.recent_intervals(conn, hearing_id, b["started_at"] - window)
                if r["at"] <= b["started_at"]]
        out.append(_break_evidence(b, tz, rows))
    return out


async def build_content(conn: AsyncConnection, hearing_id: int, *, trigger: str, now: dt.datetime,
                        note: str | None = None) -> dict[str, Any]:
    views = await hearings_repo.views(conn, [hearing_id], now)
    if not views:
        raise NotFound(f"no hearing {hearing_id}")
    h = views[0]
    tz = h["court"]["timezone"]
    start = dt.datetime.fromisoformat(h["start_utc"].replace("Z", "+00:00"))
    events = await events_repo.list_for(conn, hearing_id)
    timeline = [{"at_utc": iso(e["at"]), "at_local": _local(e["at"], tz), "kind": e["kind"],
                 "text": list(EVENT_TEXT.get(e["kind"], (e["kind"], e["kind"]))), "detail": _summary(e["detail"], tz)}
                for e in events]
    checks = [check_evidence(c, tz) for c in await checks_repo.checks_for(conn, [hearing_id])
              if c["status"] in ("passed", "failed") or c["result"] is not None or c["error"]]
    escs = await esc_repo.list_escalations(conn, hearing_id=hearing_id)
    escalations = [{"id": e["id"], "cause": e["cause"], "cause_text": list(CAUSE_TEXT.get(e["cause"], (e["cause"],) * 2)),
                    "state": e["state"], "step": e["step"], "opened_local": _local(e["opened_at"], tz),
                    "step2_local": _local(e["step2_at"], tz), "acked_by": e["acked_by"],
                    "acked_local": _local(e["acked_at"], tz), "cannot_fix_by": e["cannot_fix_by"],
                    "cannot_fix_local": _local(e["cannot_fix_at"], tz), "resolved_by": e["resolved_by"],
                    "resolved_local": _local(e["resolved_at"], tz)} for e in sorted(escs, key=lambda e: e["id"])]
    return {
        "schema": SCHEMA, "trigger": trigger, "note": note,
        "drafted_utc": iso(now), "drafted_local": _local(now, tz),
        "hearing": {
            "id": h["id"], "case_number": h["case_number"], "court": h["court"]["name"], "court_id": h["court"]["id"],
            "room": h["room"]["name"], "timezone": tz, "start_utc": h["start_utc"],
            "date_local": start.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y"),
            "time_local": start.astimezone(ZoneInfo(tz)).strftime("%H:%M"),
            "utc_offset": _offset(start, tz),
            "participants": [{"institution": p["institution_name"], "terminal_id": p["terminal_id"]}
                             for p in h["participants"]],
            "court_terminal": h["court_terminal"], "status": h["status"],
        },
        "timeline": timeline,
        "checks": checks,
        "escalations": escalations,
        "breaks": await _breaks(conn, hearing_id, tz),
    }


def act_view(act: dict, sigs: list[dict]) -> dict[str, Any]:
    tz = act["content"]["hearing"]["timezone"]
    return {
        "hearing_id": act["hearing_id"], "status": act["status"], "trigger": act["trigger"],
        "content_sha256": act["content_sha256"], "final_sha256": act["final_sha256"],
        "documents": act["documents"], "created_at": iso(act["created_at"]), "created_by": act["created_by"],
        "updated_at": iso(act["updated_at"]), "finalized_at": iso(act["finalized_at"]),
        "signatures": [{"role": s["role"], "name": s["name"], "recorded_by": s["recorded_by"],
                        "signed_at": iso(s["signed_at"]), "signed_local": _local(s["signed_at"], tz)} for s in sigs],
        "missing_signatures": [r for r in SIGNER_ROLES if r not in {s["role"] for s in sigs}],
        "content": act["content"],
    }


# --- rendering (pure, blocking: call from a thread) -----------------------------------------------

def _order(lang: str) -> list[str]:
    if lang not in LANGS:
        raise Invalid("lang: expected kk or ru", field="lang")
    return [lang] + [x for x in LANGS if x != lang]


def _jinja():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=jinja2.select_autoescape(["html"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(view: dict, lang: str) -> str:
    order = _order(lang)
    tpl = _jinja().get_template("act.html")
    return tpl.render(act=view, c=view["content"], langs=order, T=T, idx={"kk": 0, "ru": 1},
                      sha=view["final_sha256"] or view["content_sha256"])


def _fonts() -> tuple[str, str]:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    if "DejaVuSans" in pdfmetrics.getRegisteredFontNames():
        return "DejaVuSans", "DejaVuSans-Bold"
    for d in FONT_DIRS:
        regular, bold = d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont("DejaVuSans", str(regular)))
            pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(bold)))
            return "DejaVuSans", "DejaVuSans-Bold"
    raise RuntimeError("the DejaVu fonts are missing (Debian package fonts-dejavu-core): "
                       f"looked in {', '.join(str(d) for d in FONT_DIRS)}")


def render_pdf(view: dict, lang: str) -> bytes:
    """The act as PDF (A4), both languages, `lang` first; the same act gives the same bytes."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold = _fonts()
    order = _order(lang)
    c = view["content"]
    h = c["hearing"]
    sha = view["final_sha256"] or view["content_sha256"]
    st = {
        "title": ParagraphStyle("title", fontName=bold, fontSize=12.5, leading=16, alignment=1, spaceAfter=6),
        "h": ParagraphStyle("h", fontName=bold, fontSize=10.5, leading=14, spaceBefore=8, spaceAfter=3),
        "p": ParagraphStyle("p", fontName=regular, fontSize=9.5, leading=12.5),
        "cell": ParagraphStyle("cell", fontName=regular, fontSize=7.5, leading=9),
        "small": ParagraphStyle("small", fontName=regular, fontSize=7, leading=9, textColor=colors.grey),
        "mark": ParagraphStyle("mark", fontName=bold, fontSize=10, leading=13, alignment=2,
                               textColor=colors.red if view["status"] == "draft" else colors.black),
    }

    def P(text: Any, style: str = "p") -> Paragraph:
        return Paragraph(xml_escape("" if text is None else str(text)).replace("\n", "<br/>"), st[style])

    def table(rows: list[list[Any]], widths: list[float]) -> Table:
        t = Table([[P(x, "cell") for x in r] for r in rows], colWidths=[w * mm for w in widths], repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    story: list[Any] = []
    for n, lg in enumerate(order):
        t, i = T[lg], LANGS.index(lg)
        if n:
            story.append(PageBreak())
        story.append(P(t["draft"] if view["status"] == "draft" else t["final"], "mark"))
        story.append(P(t["title"], "title"))
        for label, value in ((t["court"], h["court"]), (t["room"], h["room"]), (t["case"], h["case_number"]),
                             (t["start"], f"{h['date_local']} {h['time_local']} ({h['timezone']}, UTC{h['utc_offset']})"),
                             (t["participants"], ", ".join(f"{p['institution']} ({p['terminal_id']})"
                                                           for p in h["participants"])),
                             (t["drafted"], c["drafted_local"])):
            story.append(Paragraph(f"<font name='{bold}'>{xml_escape(label)}:</font> {xml_escape(str(value))}",
                                   st["p"]))
        story.append(P(t["reason"], "h"))
        story.append(P(t[f"trigger_{c['trigger']}"]))
        story.append(Spacer(1, 2 * mm))
        story.append(P(t["statement"]))
        if c.get("note"):
            story.append(P(f"{t['note']}: {c['note']}"))
        story.append(P(t["evidence"], "h"))
        if c["checks"]:
            rows = [[t["check"], t["pair"], t["loss"], t["jitter"], t["rtt"], t["mos"], t["verdict"], t["reasons"]]]
            for ch in c["checks"]:
                rows.append([f"{t['check_' + ch['kind']]}\n{ch['finished_local'] or ''}",
                             f"{ch['caller']} → {ch['callee']}",
                             f"{t['out']} {ch['loss_out'] or '—'}\n{t['in']} {ch['loss_in'] or '—'}",
                             f"{t['out']} {ch['jitter_out'] or '—'}\n{t['in']} {ch['jitter_in'] or '—'}",
                             f"{ch['rtt_mean'] or '—'} (p95 {ch['rtt_p95'] or '—'})", ch["mos"] or "—",
                             f"{t.get(ch['verdict'] or '', ch['verdict'] or '—')} ({ch['status']})",
                             "; ".join(ch["reasons"] + ([ch["error"]] if ch["error"] else [])) or "—"])
            story.append(table(rows, [26, 28, 23, 23, 20, 10, 22, 28]))
        else:
            story.append(P(t["none"]))
        if c["breaks"]:
            story.append(P(t["breaks"], "h"))
            rows = [[t["when"], t["cause"], t["duration"], t["outcome"], t["evidence"]]]
            for b in c["breaks"]:
                rows.append([f"{b['started_local']} – {b['ended_local'] or ''}", b["cause"],
                             "—" if b["duration_s"] is None else f"{b['duration_s']:.0f} s", b["outcome"] or "—",
                             b["figures"] or "—"])
            story.append(table(rows, [40, 22, 18, 22, 78]))
        if c["escalations"]:
            story.append(P(t["escalations"], "h"))
            rows = [[t["cause"], t["opened"], t["step2"], t["acked"], t["cannot_fix"], t["resolved"]]]
            for e in c["escalations"]:
                rows.append([e["cause_text"][i], e["opened_local"], e["step2_local"] or "—",
                             f"{e['acked_by'] or '—'} {e['acked_local'] or ''}",
                             f"{e['cannot_fix_by'] or '—'} {e['cannot_fix_local'] or ''}",
                             f"{e['resolved_by'] or '—'} {e['resolved_local'] or ''}"])
            story.append(table(rows, [30, 28, 28, 32, 32, 30]))
        story.append(P(t["timeline"], "h"))
        rows = [[t["when"], t["event"], ""]]
        for ev in c["timeline"]:
            rows.append([ev["at_local"], ev["text"][i], ev["detail"]])
        story.append(table(rows, [30, 55, 95]))
        story.append(P(t["signatures"], "h"))
        signed = {s["role"]: s for s in view["signatures"]}
        rows = [["", t["signed"], t["signature"], t["date"]]]
        for role in SIGNER_ROLES:
            s = signed.get(role)
            rows.append([t[role], s["name"] if s else "", "", s["signed_local"] if s else ""])
        sig = table(rows, [50, 55, 40, 35])
        sig.setStyle(TableStyle([("TOPPADDING", (0, 1), (-1, -1), 9), ("BOTTOMPADDING", (0, 1), (-1, -1), 9)]))
        story.append(sig)
        story.append(Spacer(1, 4 * mm))
        story.append(P(f"{t['sha']}: {sha}", "small"))

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, invariant=1, title=T[order[0]]["title"],
                            author="vks-controller", subject=f"{h['case_number']}", creator="vks-controller")
    doc.build(story)
    return buf.getvalue()


# --- the service ---------------------------------------------------------------------------------

class ActService:
    async def _store_draft(self, conn: AsyncConnection, hearing_id: int, *, trigger: str, by: str,
                           now: dt.datetime, note: str | None) -> dict:
        content = await build_content(conn, hearing_id, trigger=trigger, now=now, note=note)
        digest = sha256(content)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is None:
            await repo.insert_act(conn, {"hearing_id": hearing_id, "status": "draft", "trigger": trigger,
                                         "content": content, "content_sha256": digest, "created_at": now,
                                         "created_by": by, "updated_at": now})
        else:
            await repo.update_act(conn, act["id"], trigger=trigger, content=content, content_sha256=digest,
                                  updated_at=now)
        await events_repo.append(conn, hearing_id, "act_drafted", now, {
            "by": by, "trigger": trigger, "content_sha256": digest, "redrafted": act is not None})
        return await repo.get_for_hearing(conn, hearing_id)

    async def draft(self, conn: AsyncConnection, hearing_id: int, user: dict, note: str | None,
                    now: dt.datetime) -> dict:
        """The secretary asks for the act (again: the draft is refreshed while unsigned)."""
        await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is not None:
            if act["status"] == "final":
                raise Conflict(f"the act of hearing {hearing_id} is final (signed {iso(act['finalized_at'])})",
                               code="act_final")
            if await repo.signatures(conn, act["id"]):
                raise Conflict("the draft has signatures; it cannot be redrafted", code="act_signed")
        trigger = act["trigger"] if act is not None and act["trigger"] != "requested" else "requested"
        act = await self._store_draft(conn, hearing_id, trigger=trigger, by=user["name"], now=now, note=note)
        await users_repo.record(conn, user["name"], "act.draft", f"hearing:{hearing_id}", now,
                                {"content_sha256": act["content_sha256"]})
        return act_view(act, [])

    async def draft_auto(self, conn: AsyncConnection, hearing_id: int, *, trigger: str, now: dt.datetime) -> bool:
        """Drafted by the escalation (caller holds the hearing lock). An act
        already signed or final is left as it is. Returns whether it drafted."""
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is not None and (act["status"] == "final" or await repo.signatures(conn, act["id"])):
            return False
        await self._store_draft(conn, hearing_id, trigger=trigger, by="system", now=now,
                                note=act["content"].get("note") if act else None)
        return True

    async def get(self, conn: AsyncConnection, hearing_id: int) -> dict:
        await hearings_repo.get_hearing(conn, hearing_id)
        act = await repo.get_for_hearing(conn, hearing_id)
        if act is None:
            raise NotFound(f"hearing {hearing_id} has no act of technical impossibility", code="no_act")
        return act_view(act, await repo.signatures(conn, act["id"]))

    async def sign(self, conn: AsyncConnection, hearing_id: int, role: str, name: str, user: dict,
                   now: dt.datetime) -> dict:
        if role not in SIGNER_ROLES:
            raise Invalid(f"role: expected one of {', '.join(SIGNER_ROLES)}", field="role")
        if user["role"] not in MAY_SIGN[role]:
            raise Forbidden(f"the {role} signature is recorded by a {' or an '.join(sorted(MAY_SIGN[role]))}, "
                            f"not by a {user['role']}")
        await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is None:
            raise NotFound(f"hearing {hearing_id} has no act of technical impossibility", code="no_act")
        if act["status"] == "final":
            raise Conflict(f"the act of hearing {hearing_id} is final", code="act_final")
        sigs = await repo.signatures(conn, act["id"])
        if any(s["role"] == role for s in sigs):
            raise Conflict(f"the {role} has signed already", code="signed")
        await repo.add_signature(conn, act["id"], role, name, user["name"], now)
        sigs = await repo.signatures(conn, act["id"])
        await events_repo.append(conn, hearing_id, "act_signed", now, {"role": role, "name": name,
                                                                      "recorded_by": user["name"]})
        await users_repo.record(conn, user["name"], "act.sign", f"hearing:{hearing_id}", now,
                                {"role": role, "name": name})
        if {s["role"] for s in sigs} >= set(SIGNER_ROLES):
            await self._finalize(conn, act, sigs, now)
        act = await repo.get_for_hearing(conn, hearing_id)
        return act_view(act, sigs)

    async def _finalize(self, conn: AsyncConnection, act: dict, sigs: list[dict], now: dt.datetime) -> None:
        sealed = {"content_sha256": act["content_sha256"],
                  "signatures": [{"role": s["role"], "name": s["name"], "signed_at": iso(s["signed_at"])}
                                 for s in sigs]}
        final_sha = sha256(sealed)
        view = act_view({**act, "status": "final", "final_sha256": final_sha, "finalized_at": now}, sigs)

        def documents() -> dict:
            out = {}
            for lg in LANGS:
                out[lg] = {"html_sha256": hashlib.sha256(render_html(view, lg).encode("utf-8")).hexdigest(),
                           "pdf_sha256": hashlib.sha256(render_pdf(view, lg)).hexdigest()}
            return out
        docs = await asyncio.to_thread(documents)
        await repo.update_act(conn, act["id"], status="final", final_sha256=final_sha, finalized_at=now,
                              documents=docs, updated_at=now)
        await events_repo.append(conn, act["hearing_id"], "act_final", now, {
            "final_sha256": final_sha, "documents": docs})
