"""The operability export (rule 3): hearings with their verdicts as JSON or CSV. The CSV keeps its
columns, order and format (CRLF lines, empty cells for none) for the tools that read it. Every CSV the
controller writes goes through `csv_text` (this export and a hearing's event record): a text cell a
spreadsheet would run as a formula (OWASP's CSV injection: a leading = + - @, tab or CR) gets a
leading single quote."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from controller import access, auth
from controller.api.requests import API, now, ok, q_choice, q_time
from controller.api.routing import Query, Route
from controller.keys import DB_KEY
from controller.selfcheck import evidence as selfcheck_evidence
from controller.store import hearings as hearings_repo
from controller.store import modes as modes_repo
from controller.store.hearings import iso

SCHEMA = "vks.hearings-export/1"
EXPORT_COLUMNS = ["id", "case_number", "court_id", "court_name", "court_level", "room", "start_utc", "start_local",
                  "duration_min", "status", "verdict", "suspended", "participants", "test_status",
                  "test_deadline", "test_verdict", "preconnect_status", "preconnect_verdict", "agreement_coordinator",
                  "agreement_state", "modes",
                  "self_checks"]      # issue 14, appended: the columns before it keep their place


def modes_cell(modes: list[dict]) -> str:
    """The CSV cell of a hearing's modes (rule 21): "party:mode" joined by ";", a terminal by its id,
    a person by name (and kind)."""
    return ";".join(f"{m.get('terminal_id') or m['name'] + (' (' + m['kind'] + ')' if m.get('kind') else '')}:"
                    f"{m['mode']}" for m in modes)


def party_modes(rows: list[dict]) -> list[dict]:
    """The latest mode of each party (controller.store.modes rows) as the export gives it."""
    return [{"terminal_id": r["terminal_id"], "name": r["name"], "kind": r["party_kind"], "mode": r["mode"],
             "recorded_at": iso(r["recorded_at"]), "recorded_by": r["recorded_by"]}
            for r in modes_repo.current(rows)]


def export_record(h: dict, modes: list[dict] | None = None) -> dict:
    """One hearing's export record from its view and its parties' modes (the keys are EXPORT_COLUMNS;
    `modes` a list, a cell of its own in the CSV)."""
    tr, pc = h["test_request"] or {}, h["preconnect"] or {}
    return {
        "id": h["id"], "case_number": h["case_number"], "court_id": h["court"]["id"],
        "court_name": h["court"]["name"], "court_level": h["court"]["level"], "room": h["room"]["name"],
        "start_utc": h["start_utc"], "start_local": h["start_local"], "duration_min": h["duration_min"],
        "status": h["status"], "verdict": h["verdict"], "suspended": h["suspended"],
        "participants": ";".join(f"{p['institution_id']}/{p['terminal_id']}" for p in h["participants"]),
        "test_status": tr.get("status"), "test_deadline": tr.get("deadline"), "test_verdict": tr.get("verdict"),
        "preconnect_status": pc.get("status"), "preconnect_verdict": pc.get("verdict"),
        "agreement_coordinator": h["agreement"]["coordinator"], "agreement_state": h["agreement"]["state"],
        "modes": modes or [],
    }


# The first characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """One CSV cell: None as empty, text a spreadsheet would run as a formula behind a single quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV text with CRLF lines: the header, then each row's cells through csv_cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows([csv_cell(v) for v in r] for r in rows)
    return buf.getvalue()


def to_csv(records: list[dict]) -> str:
    """The export records as CSV text: a header of EXPORT_COLUMNS, CRLF lines, None as an empty cell."""
    def cell(r: dict, k: str):
        if k == "modes":
            return modes_cell(r[k])
        if k == "self_checks":
            return selfcheck_evidence.export_cell(r.get(k) or [])
        return r.get(k)
    return csv_text(EXPORT_COLUMNS, ([cell(r, k) for k in EXPORT_COLUMNS] for r in records))


async def export_hearings(request: web.Request) -> web.Response:
    """GET /exports/hearings[?format=json|csv&from=&to=&court_id=]: the hearings in the user's scope."""
    fmt = q_choice(request, "format", ("json", "csv")) or "json"
    t = now(request)
    scope = access.of(request)
    async with request.app[DB_KEY].read() as conn:
        ids = await hearings_repo.list_ids(conn, start_from=q_time(request, "from"), start_to=q_time(request, "to"),
                                           court_id=request.query.get("court_id") or None, limit=100_000,
                                           where=None if scope.national else scope.hearing_clause())
        modes = await modes_repo.rows_of(conn, ids)
        records = [export_record(h, party_modes(modes[h["id"]])) for h in await hearings_repo.views(conn, ids, t)]
        checks = await selfcheck_evidence.export_fields(conn, ids, t)      # mobile participants (issue 14)
    for r in records:
        r["self_checks"] = checks.get(r["id"], [])
    if fmt == "json":
        return ok({"schema": SCHEMA, "exported_at": iso(t), "hearings": records})
    return web.Response(text=to_csv(records), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="hearings.csv"'})


ROUTES: list[Route] = [
    Route("GET", f"{API}/exports/hearings", export_hearings, auth.READ,
          "Hearings with their operability verdicts (rule 3) and each party's mode (rule 21) as JSON or CSV",
          query=[Query("format", {"type": "string", "enum": ["json", "csv"]}),
                 Query("from", {"type": "string", "format": "date-time"}),
                 Query("to", {"type": "string", "format": "date-time"}), Query("court_id", {"type": "string"})]),
]
