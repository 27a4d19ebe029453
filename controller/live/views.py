"""What the API shows of live monitoring, read from the database: each transition writes its state
row, break and event in one transaction, so a view is consistent (and any controller can give it).
"""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from contract.vocab import HearingVerdict
from controller import rules
from controller.live.machine import BANNER, BREAK_SHOWN, Flow, to_dt
from controller.store import hearings as hearings_repo
from controller.store import live as store
from controller.store.hearings import iso

INTERVALS_SHOWN_S = 120


async def live_view(conn: AsyncConnection, hearing_id: int, now: float, flow: Flow | None) -> dict:
    """The live state of a hearing: state, verdict, the open break, the last 120 s (`flow`: the
    flow in memory, whose stats are fresher than the row's)."""
    await hearings_repo.get_hearing(conn, hearing_id)
    st = await store.get_state(conn, hearing_id)
    b = await store.get_break(conn, st["break_id"]) if st and st["break_id"] else None
    rows = await store.recent_intervals(conn, hearing_id, to_dt(now - INTERVALS_SHOWN_S))
    stats = (flow.stats if flow is not None else (st["stats"] if st else None)) or {}
    state = st["state"] if st else "idle"
    return {
        "hearing_id": hearing_id,
        "state": state,
        "verdict": st["verdict"] if st else HearingVerdict.UNKNOWN,
        "since": iso(st["since"]) if st else None,
        "caller": st["caller"] if st else None, "callee": st["callee"] if st else None,
        "session_id": st["session_id"] if st else None,
        "attempt": st["attempt"] if st else 0,
        "break": break_out(b, now) if b else None,
        "banner": BANNER if state in BREAK_SHOWN else None,
        "stats": {k: v for k, v in stats.items() if not k.startswith("_")},
        "intervals": merge_intervals(rows, st["caller"] if st else None),
    }


async def breaks_view(conn: AsyncConnection, hearing_id: int, now: float) -> list[dict]:
    """The hearing's breaks, oldest first."""
    await hearings_repo.get_hearing(conn, hearing_id)
    return [break_out(b, now) for b in await store.breaks_for(conn, hearing_id)]


def break_out(b: dict, now: float) -> dict:
    """A break row as the API shows it (an open break's duration so far)."""
    ended = b["ended_at"] or b["resumed_at"]
    return {"id": b["id"], "cause": b["cause"], "evidence": b["evidence"], "started_at": iso(b["started_at"]),
            "attempts": b["attempts"], "ready_at": iso(b["ready_at"]), "resumed_at": iso(b["resumed_at"]),
            "resumed_by": b["resumed_by"], "escalated_at": iso(b["escalated_at"]), "ended_at": iso(b["ended_at"]),
            "outcome": b["outcome"],
            "duration_s": b["duration_s"] if ended else round(now - b["started_at"].timestamp(), 1)}


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
