"""Mobile participants in the act's evidence (issue 14, part 3; rule 18): each self-check of the
hearing with its person, mode, devices, figures both ways, verdict and reasons, in Kazakh and Russian
(controller.acts adds `self_checks` to the act's content; controller.act_render prints it), and the
words of its escalation cause in the act's timeline (its events' sentences are the catalog's,
contract/reasons.yaml `events`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from contract import reasons
from controller.store import selfchecks as repo

LANGS = ("kk", "ru")
CAUSE_TEXT = {"self_check_failed": ("қашықтағы қатысушының өзін-өзі тексеруі сәтсіз",
                                    "самопроверка удалённого участника не пройдена")}
MODE_TEXT = {"vks": ("ВКС терминалы", "терминал ВКС"),
             "mobile": ("мобильді ВКС (телефон немесе ноутбук)", "мобильная ВКС (телефон или ноутбук)"),
             "in_person": ("жеке өзі", "лично")}
STATUS_TEXT = {"pending": ("сілтеме ашылмады", "ссылка не открыта"), "running": ("жүріп жатыр", "идёт"),
               "done": ("өтті", "пройдена"), "failed": ("сәтсіз", "не удалась"),
               "expired": ("мерзімі өтті, ашылмады", "срок истёк, не открыта")}
DEVICE_TEXT = {"ok": ("жұмыс істейді", "работает"), "denied": ("рұқсат берілмеген", "доступ не разрешён"),
               "missing": ("табылмады", "не найден"), "black": ("қара бейне", "чёрное изображение"),
               "frozen": ("бейне қатып қалған", "изображение застыло"), "silent": ("дыбыс жоқ", "нет звука")}
T = {
    "kk": {"self_checks": "Мобильді ВКС қатысушыларының өзін-өзі тексеруі (20-тармақ)", "person": "Қатысушы",
           "devices": "Камера / микрофон", "figures": "Көрсеткіштер"},
    "ru": {"self_checks": "Самопроверки участников мобильной ВКС (п. 20)", "person": "Участник",
           "devices": "Камера / микрофон", "figures": "Показатели"},
}
_IN_OUT = {"kk": ("кіріс", "шығыс"), "ru": ("вх.", "исх.")}


def _num(v: float | None, digits: int, scale: float = 1.0) -> str:
    return "—" if v is None else f"{v * scale:.{digits}f}".replace(".", ",")


def figures(row: dict[str, Any], lang: str) -> str:
    """RTT and each direction's loss and bitrate, in the act's words (ms and kb/s: мс, кбит/с)."""
    if row["status"] != "done":
        return "—"
    words = _IN_OUT[lang]
    parts = [f"RTT {_num(row['rtt_ms'], 0)} мс"]
    for word, d in zip(words, (row["inbound"] or {}, row["outbound"] or {}), strict=True):
        parts.append(f"{word} {_num(d.get('loss_ratio'), 1, 100)} %, {_num(d.get('bitrate_kbps'), 0)} кбит/с")
    return "; ".join(parts)


def _local(t: dt.datetime | None, tz: str) -> str | None:
    return t.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M") if t else None


async def rows(conn: AsyncConnection, hearing_id: int, tz: str, now: dt.datetime) -> list[dict[str, Any]]:
    """The hearing's self-checks as the act's evidence (texts as [kk, ru])."""
    out = []
    for r in await repo.list_for(conn, [hearing_id]):
        status = repo.effective_status(r, now)
        both = {**r, "status": status}
        out.append({
            "name": r["name"], "mode": r["mode"], "mode_text": list(MODE_TEXT.get(r["mode"], (r["mode"],) * 2)),
            "status": status, "status_text": list(STATUS_TEXT.get(status, (status,) * 2)),
            "verdict": r["verdict"], "finished_local": _local(r["finished_at"], tz),
            "devices": [" / ".join(DEVICE_TEXT.get(r[k] or "", ("—", "—"))[i] for k in ("camera", "microphone"))
                        for i in range(2)],
            "figures": [figures(both, lg) for lg in LANGS], "path_type": r["path_type"],
            "reason_text": {lg: [reasons.text(rc, lg) for rc in r["reason_codes"] or []] for lg in LANGS},
        })
    return out


# --- the operability export (rule 3; controller.api.exports) ------------------------------------------

EXPORT_KEYS = ("name", "mode", "status", "verdict", "camera", "microphone", "finished_at")


async def export_fields(conn: AsyncConnection, hearing_ids: list[int], now: dt.datetime) -> dict[int, list[dict]]:
    """{hearing id: its self-checks as the export lists them (EXPORT_KEYS)}."""
    out: dict[int, list[dict]] = {hid: [] for hid in hearing_ids}
    for r in await repo.list_for(conn, hearing_ids):
        v = repo.view(r, now)
        out[r["hearing_id"]].append({k: v[k] for k in EXPORT_KEYS})
    return out


def export_cell(items: list[dict]) -> str | None:
    """The CSV cell: `name (mode): status verdict` per self-check, `; ` between; None for none."""
    return "; ".join(f"{x['name']} ({x['mode']}): {x['status']}" + (f" {x['verdict']}" if x["verdict"] else "")
                     for x in items) or None
