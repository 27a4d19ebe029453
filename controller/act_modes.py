"""The act's evidence of how each party took part (rules 21, 23): the modes last recorded
(controller.store.modes), each party named - a terminal by its institution and id, a person by name
and kind - with the mode in Kazakh and Russian, its time and who recorded it."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from controller.store import modes as modes_repo

MODE_TEXT = {
    "vks": ("ВКС арқылы", "посредством ВКС"),
    "mobile": ("мобильді ВКС арқылы", "посредством мобильной ВКС"),
    "in_person": ("сот залында жеке өзі", "лично в зале суда"),
}
OCCASION_TEXT = {"break": ("үзілістен кейін", "после перерыва"), "postponement": ("кейінге қалдырылғаннан кейін",
                                                                                    "после отложения")}
HEADINGS = {"kk": ("Тараптардың қатысу тәсілі (21, 23-т.)", "Тарап", "Тәсілі", "Жазылды"),
            "ru": ("Способ участия сторон (пп. 21, 23)", "Сторона", "Способ", "Записано")}


async def section(conn: AsyncConnection, h: dict, local: Callable[[dt.datetime | None, str], str | None],
                  tz: str) -> list[dict[str, Any]]:
    """The act content's `modes`: one entry per party with its last recorded mode."""
    rows = (await modes_repo.rows_of(conn, [h["id"]]))[h["id"]]
    inst = {p["terminal_id"]: p["institution_name"] for p in h["participants"]}
    out = []
    for r in modes_repo.current(rows):
        party = (f"{inst.get(r['terminal_id'], r['terminal_id'])} ({r['terminal_id']})" if r["terminal_id"]
                 else r["name"] + (f" ({r['party_kind']})" if r["party_kind"] else ""))
        out.append({"party": party, "terminal_id": r["terminal_id"], "mode": r["mode"],
                    "mode_text": list(MODE_TEXT.get(r["mode"], (r["mode"], r["mode"]))),
                    "occasion_text": list(OCCASION_TEXT[r["occasion"]]) if r["occasion"] in OCCASION_TEXT else None,
                    "recorded_local": local(r["recorded_at"], tz), "recorded_by": r["recorded_by"]})
    return out


def table_rows(modes: list[dict], lang: str) -> tuple[str, list[list[str]]]:
    """(heading, rows with a header row) of the act's table of modes in `lang`."""
    i = ("kk", "ru").index(lang)
    title, party, mode, recorded = HEADINGS[lang]
    rows = [[party, mode, recorded]]
    for m in modes:
        how = m["mode_text"][i] + (f" ({m['occasion_text'][i]})" if m.get("occasion_text") else "")
        rows.append([m["party"], how, f"{m['recorded_by']} {m['recorded_local'] or ''}"])
    return title, rows
