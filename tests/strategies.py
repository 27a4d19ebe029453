"""Hypothesis strategies for VALID wire input: they build only what the contract allows (no NUL in an
id, counts that are whole and not negative, ratios within 0..1, the vocabularies' words), so a test
that means valid input never fails because a draw happened to break a rule. Invalid input is fuzzed
on purpose and separately (tests/test_wire.py `message_like`, tests/test_fuzz_ws.py).
"""
from __future__ import annotations

from hypothesis import strategies as st

from contract import wire
from contract.vocab import HealthStatus, ReportKind, SessionKind, SessionRole, Verdict, words

# Ids and names the controller stores as text: no NUL (PostgreSQL refuses it; wire.NO_NUL).
NOT_NUL = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])


def text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Text without NUL."""
    return st.text(NOT_NUL, min_size=min_size, max_size=max_size)


ids = text(1, 128)                 # wire.Id
terminal_ids = text(1, 64)         # wire.TerminalId
counts = st.integers(0, 10**6)
amounts = st.integers(0, 10**4) | st.floats(0, 1e4, allow_nan=False, allow_infinity=False)
ratios = st.floats(0, 1, allow_nan=False)
# A key no model knows: kept as it came (a newer agent's figure).
unknown = st.dictionaries(text(0, 6).map(lambda k: f"x_{k}"),
                          st.none() | st.booleans() | st.integers() | text(), max_size=2)


def _payload(known: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    """Any subset of the known keys, plus unknown ones."""
    return st.builds(lambda a, b: {**b, **a}, st.fixed_dictionaries({}, optional=known), unknown)


side_seconds = _payload({"t": amounts, "packets": counts, "lost": counts, "loss_ratio": ratios,
                         "jitter_ms": amounts | st.none(), "bitrate_kbps": amounts, "fps": counts | st.none(),
                         "stalled": st.booleans()})
intervals = _payload({"t": amounts, "rtt_ms": amounts | st.none(), "inbound": side_seconds | st.none(),
                      "outbound": side_seconds | st.none()})
summaries = _payload({k: amounts | st.none() for k in ("mean", "p50", "p95", "max")})
directions = _payload({"packets": counts | st.none(), "lost": counts | st.none(), "loss_ratio": ratios | st.none(),
                       "jitter_ms": amounts | summaries | st.none(), "bitrate_kbps": amounts | st.none(),
                       "stall_s": counts, "longest_stall_s": counts, "fps": amounts | st.none(),
                       "freezes": counts | st.none(), "freeze_s": amounts | st.none()})
session_reports = _payload({
    "schema": st.just("vks.test-report/1"), "started_at": text(), "duration_s": amounts,
    "connected": st.booleans(), "connect_ms": amounts | st.none(), "error": text() | st.none(),
    "profile": text(), "rtt_ms": summaries, "outbound": directions, "inbound": directions,
    "mos": st.floats(1, 4.5) | st.none(), "verdict": st.sampled_from(words(Verdict)),
    "reasons": st.lists(text(), max_size=3), "intervals": st.lists(intervals, max_size=3),
    "reason_codes": st.lists(_payload({"code": text(), "params": st.dictionaries(text(1, 8), amounts | text())}),
                             max_size=3)})
hooks = _payload({"event": st.sampled_from(["break", "reconnect", "resume"]), "hearing_id": st.integers(1, 10**6),
                  "configured": st.booleans(), "ok": st.booleans(), "error": text() | st.none()})
_health = {"schema": st.just("vks.health/1"), "status": st.sampled_from([*words(HealthStatus), "unknown"]),
           "problems": st.lists(text(), max_size=3), "checked_at": text()}
healths = _payload(_health)
_session_part = {"role": st.sampled_from(words(SessionRole)), "peer": terminal_ids,
                 "session_kind": st.sampled_from(words(SessionKind))}
BODIES: dict[str, st.SearchStrategy[dict]] = {
    ReportKind.SESSION: _payload({**_session_part, "role": st.just(SessionRole.CALLER.value),
                                  "report": session_reports}),
    ReportKind.INTERVAL: _payload({**_session_part, "interval": intervals}),
    ReportKind.HEALTH: _payload({**_health, "hook": hooks}),
}


def report_bodies(*kinds: str) -> st.SearchStrategy[tuple[str, dict]]:
    """(kind, body) of one of `kinds` (default: every kind)."""
    return st.sampled_from(kinds or words(ReportKind)).flatmap(lambda k: st.tuples(st.just(k), BODIES[k]))


def reports(*kinds: str, report_id: st.SearchStrategy[str] = ids) -> st.SearchStrategy[wire.Report]:
    """A valid `report` message of one of `kinds`."""
    return st.builds(lambda rid, kb: wire.Report(report_id=rid, kind=kb[0], body=kb[1]),
                     report_id, report_bodies(*kinds))


signals = st.builds(lambda sid, to, sdp: wire.Signal(session_id=sid, to=to,
                                                    description=wire.Description(type="offer", sdp=sdp)),
                    ids, terminal_ids, st.text(max_size=50))
heartbeats = st.builds(lambda h, s: wire.Heartbeat(health=h, sessions=s), healths, st.lists(ids, max_size=3))
