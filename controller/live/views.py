"""What the API shows of live monitoring, read from the database: each transition writes its state
row, break and event in one transaction, so a view is consistent (and any controller can give it).

A hearing's first remote participant's flow is `live_state` and gives the view's top-level keys
(as before every participant was monitored); `participants` lists every remote participant's flow,
the first one first, each with its state, verdict, open break (whose link, the judge's decision)
and its last 120 s.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import HearingVerdict
from controller import rules
from controller.live import words
from controller.live.machine import BREAK_SHOWN, Flow, to_dt
from controller.store import hearings as hearings_repo
from controller.store import live as store
from controller.store import live_participants as lp
from controller.store.hearings import iso

INTERVALS_SHOWN_S = 120


async def live_view(conn: AsyncConnection, hearing_id: int, now: float, flows: Iterable[Flow] = ()) -> dict:
    """The live state of a hearing: state, verdict, the open break, the last 120 s, and the same
    per participant (`flows`: the flows in memory, whose stats are fresher than the rows')."""
    await hearings_repo.get_hearing(conn, hearing_id)
    st = await store.get_state(conn, hearing_id)
    rows_p = [st] if st else []
    rows_p += await lp.of_hearing(conn, hearing_id)
    breaks = await store.breaks_by_id(conn, [r["break_id"] for r in rows_p if r["break_id"]])
    decided = await lp.decisions(conn, list(breaks))
    names = await lp.terminal_names(conn, [r["callee"] for r in rows_p])
    rows = await store.recent_intervals(conn, hearing_id, to_dt(now - INTERVALS_SHOWN_S))
    memory = {f.callee: f for f in flows}
    first = rows_p[0]["callee"] if rows_p else None
    parts = [_participant(r, breaks, decided, names, memory.get(r["callee"]), rows, first, now) for r in rows_p]
    top = parts[0] if parts else None
    return {
        "hearing_id": hearing_id,
        "state": top["state"] if top else "idle",
        "verdict": top["verdict"] if top else HearingVerdict.UNKNOWN,
        "since": top["since"] if top else None,
        "caller": st["caller"] if st else None, "callee": st["callee"] if st else None,
        "session_id": top["session_id"] if top else None,
        "attempt": top["attempt"] if top else 0,
        "break": top["break"] if top else None,
        "banner": top["banner"] if top else None,
        "stats": top["stats"] if top else {},
        "intervals": top["intervals"] if top else [],
        "participants": parts,
    }


def _participant(r: dict, breaks: dict, decided: dict, names: dict, flow: Flow | None, rows: list[dict],
                 first: str | None, now: float) -> dict:
    b = breaks.get(r["break_id"]) if r["break_id"] else None
    out_b = break_out(b, now, decided.get(b["id"]) if b else None) if b else None
    name = names.get(r["callee"]) or r["callee"]
    shown = r["state"] in BREAK_SHOWN
    stats = (flow.stats if flow is not None else r["stats"]) or {}
    mine = [x for x in rows if (x.get("callee") or first) == r["callee"]]
    return {
        "terminal_id": r["callee"], "terminal_name": name,
        "state": r["state"], "verdict": r["verdict"], "since": iso(r["since"]),
        "session_id": r["session_id"], "attempt": r["attempt"],
        "break": out_b,
        "banner": words.banner(name, b["evidence"] if b else None) if shown else None,
        "stats": {k: v for k, v in stats.items() if not k.startswith("_")},
        "intervals": merge_intervals(mine, r["caller"]),
    }


async def breaks_view(conn: AsyncConnection, hearing_id: int, now: float) -> list[dict]:
    """The hearing's breaks, oldest first."""
    await hearings_repo.get_hearing(conn, hearing_id)
    items = await store.breaks_for(conn, hearing_id)
    decided = await lp.decisions(conn, [b["id"] for b in items])
    return [break_out(b, now, decided.get(b["id"])) for b in items]


def break_out(b: dict, now: float, decision: dict | None = None) -> dict:
    """A break row as the API shows it (an open break's duration so far), whose link failed, the
    recommendation and its evidence as reasons (`{code, params}`), and the judge's decision."""
    ended = b["ended_at"] or b["resumed_at"]
    ev = b["evidence"] or {}
    terminal = ev.get("terminal_name") or ev.get("terminal_id")
    return {"id": b["id"], "cause": b["cause"], "evidence": b["evidence"], "started_at": iso(b["started_at"]),
            "attempts": b["attempts"], "ready_at": iso(b["ready_at"]), "resumed_at": iso(b["resumed_at"]),
            "resumed_by": b["resumed_by"], "escalated_at": iso(b["escalated_at"]), "ended_at": iso(b["ended_at"]),
            "outcome": b["outcome"],
            "duration_s": b["duration_s"] if ended else round(now - b["started_at"].timestamp(), 1),
            "terminal_id": ev.get("terminal_id"), "terminal_name": terminal,
            "reasons": words.reasons(terminal, ev) if terminal else [],
            "decision": decision["decision"] if decision else None,
            "decided_at": iso(decision["decided_at"]) if decision else None,
            "decided_by": decision["decided_by"] if decision else None}


def merge_intervals(rows: list[dict], caller: str | None) -> list[dict]:
    """One entry per second of the caller's view (both directions); the callee's own receive
    figures fill an outbound the caller did not get."""
    callee_in = {(r["session_id"], r["t"]): r for r in rows if r["terminal_id"] != caller}
    out = []
    for r in rows:
        if r["terminal_id"] != caller:
            continue
        outbound = r["outbound"]
        other = callee_in.get((r["session_id"], r["t"]))
        if outbound is None and other is not None:
            outbound = other["inbound"]
        verdict = r["verdict"]
        if other is not None:
            verdict = rules.worst([verdict, other["verdict"]]) or verdict
        out.append({"t": r["t"], "at": iso(r["at"]), "session_id": r["session_id"], "inbound": r["inbound"],
                    "outbound": outbound, "rtt_ms": r["rtt_ms"], "stalled": r["stalled"], "verdict": verdict})
    return out
