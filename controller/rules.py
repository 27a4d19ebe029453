"""The clock of the rules: pure functions of a given `now` (no I/O, no clock).

- Rule 13: the test request is created when the hearing is scheduled; the
  test session runs at once and no later than 24 h before the start. If that
  moment has already passed when the hearing is scheduled, the test still runs
  at once, its deadline is `now`, and the request is marked late.
- Rule 15: the pre-connect check runs in the window [start-30 min, start-20 min].
- Rules 11, 12: who agrees the date and time - the regional court's coordinator
  for first instance and appeal (district and regional courts), the
  Department's coordinator for cassation (the Supreme Court).
- Rule 24: a suspension of an institution, or of the whole area it is in,
  blocks checks and sessions while it is in force.
- Rule 3: the hearing's operability verdict, from the latest check results
  (and live state when the hearing-in-progress work supplies it).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contract import vocab
from contract.vocab import CheckKind, CheckStatus, Coordinator, CourtLevel, HearingVerdict, Verdict, words

TEST_LEAD = dt.timedelta(hours=24)
PRECONNECT_OPENS = dt.timedelta(minutes=30)
PRECONNECT_CLOSES = dt.timedelta(minutes=20)

# Check statuses that end a check (nothing more will happen to it by itself).
FINISHED = frozenset({CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.CANCELLED})
# Statuses in which the check still has to run.
OPEN = frozenset(CheckStatus) - FINISHED

VERDICT_ORDER = words(Verdict)   # better -> worse


class RuleError(ValueError):
    """An input the rules cannot be applied to (e.g. an unknown court level)."""


def _aware(t: dt.datetime, name: str) -> dt.datetime:
    """`t` in UTC; a naive time is refused (no guessing)."""
    if t.tzinfo is None:
        raise RuleError(f"{name} must be timezone-aware (UTC)")
    return t.astimezone(dt.UTC)


@dataclass(frozen=True)
class CheckPlan:
    """When a check may start (`due_from`), when it must be done (`deadline`),
    when its run job fires (`run_at`) and whether it was late at creation."""
    kind: str
    created_at: dt.datetime
    due_from: dt.datetime
    deadline: dt.datetime
    run_at: dt.datetime
    late: bool
    status: str          # "pending" (run now) or "scheduled" (later)


def plan_test(start: dt.datetime, now: dt.datetime) -> CheckPlan:
    """Rule 13: created now, run at once, deadline start - 24 h (or now if past)."""
    start, now = _aware(start, "start"), _aware(now, "now")
    deadline = start - TEST_LEAD
    late = deadline <= now
    if late:
        deadline = now
    return CheckPlan(CheckKind.TEST, now, now, deadline, now, late, CheckStatus.PENDING)


def preconnect_window(start: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Rule 15: the pre-connect check's window [start - 30 min, start - 20 min]."""
    start = _aware(start, "start")
    return start - PRECONNECT_OPENS, start - PRECONNECT_CLOSES


def plan_preconnect(start: dt.datetime, now: dt.datetime) -> CheckPlan:
    """Rule 15: runs when the window opens; if scheduled inside or after the
    window it runs at once (late when the window has already closed)."""
    now = _aware(now, "now")
    opens, closes = preconnect_window(start)
    if now < opens:
        return CheckPlan(CheckKind.PRECONNECT, now, opens, closes, opens, False, CheckStatus.SCHEDULED)
    late = now >= closes
    return CheckPlan(CheckKind.PRECONNECT, now, now, now if late else closes, now, late, CheckStatus.PENDING)


def plan(kind: str, start: dt.datetime, now: dt.datetime) -> CheckPlan:
    """The plan of a check of `kind` (test: rule 13, preconnect: rule 15)."""
    if kind == CheckKind.TEST:
        return plan_test(start, now)
    if kind == CheckKind.PRECONNECT:
        return plan_preconnect(start, now)
    raise RuleError(f"unknown check kind {kind!r}")


def is_overdue(status: str, deadline: dt.datetime, now: dt.datetime) -> bool:
    """A check that has not produced a result by its deadline is overdue."""
    return status not in FINISHED and _aware(now, "now") >= _aware(deadline, "deadline")


def coordinator_for(level: str) -> str:
    """Rules 11, 12: whose agreement a hearing at a court of `level` needs."""
    if level in (CourtLevel.DISTRICT, CourtLevel.REGIONAL):
        return Coordinator.REGIONAL
    if level == CourtLevel.SUPREME:
        return Coordinator.DEPARTMENT
    raise RuleError(f"unknown court level {level!r} (expected district, regional or supreme)")


@dataclass(frozen=True)
class Suspension:
    """A suspension of an institution or of an area (rule 24), as the rules see it."""
    id: int
    institution_id: str | None
    region: str | None
    from_utc: dt.datetime
    until_utc: dt.datetime | None = None
    lifted_at: dt.datetime | None = None

    def in_force(self, at: dt.datetime) -> bool:
        """In force at `at`: started, and neither expired nor lifted."""
        at = _aware(at, "at")
        if at < self.from_utc:
            return False
        end = min((t for t in (self.until_utc, self.lifted_at) if t is not None), default=None)
        return end is None or at < end

    def covers(self, institution_id: str, region: str) -> bool:
        """Covers a site: the institution itself, or the area it is in."""
        if self.institution_id is not None:
            return self.institution_id == institution_id
        return self.region == region


def blocking_suspensions(suspensions: Iterable[Suspension], sites: Mapping[str, str],
                         at: dt.datetime) -> list[Suspension]:
    """Suspensions in force at `at` that cover any of `sites` ({institution_id: region})."""
    return [s for s in suspensions
            if s.in_force(at) and any(s.covers(i, r) for i, r in sites.items())]


def worst(verdicts: Iterable[str | None]) -> Verdict | None:
    """The worst session verdict (good < degraded < unusable) among `verdicts`; other words (a
    hearing's unknown or suspended) and None are ignored, and None stands when no verdict is left."""
    ranked = [v for v in verdicts if v in VERDICT_ORDER]
    return vocab.worst(Verdict, ranked, Verdict.GOOD) if ranked else None


@dataclass(frozen=True)
class CheckState:
    """A check as the hearing's verdict sees it."""
    kind: str            # test | preconnect
    status: str
    verdict: str | None  # good | degraded | unusable, when a result is in
    finished_at: dt.datetime | None = None


def hearing_verdict(checks: Sequence[CheckState], *, suspended: bool,
                    live: str | None = None) -> str:
    """Rule 3: the operability verdict shown and exported for a hearing.

    `suspended` wins (no VKS is possible); then the live verdict of a hearing in
    progress when one is known; then the most recent kind of check that has
    results (pre-connect after test), the worst over its participants - a check
    that failed without a report counts as unusable. Otherwise "unknown".
    """
    if suspended:
        return HearingVerdict.SUSPENDED
    if live in VERDICT_ORDER:
        return HearingVerdict(live)
    for kind in (CheckKind.PRECONNECT, CheckKind.TEST):
        done = [c for c in checks if c.kind == kind and c.status in (CheckStatus.PASSED, CheckStatus.FAILED)]
        if not done:
            continue
        v = worst((c.verdict or (Verdict.UNUSABLE if c.status == CheckStatus.FAILED else Verdict.GOOD))
                  for c in done)
        if v:
            return HearingVerdict(v)
    return HearingVerdict.UNKNOWN


def check_status_for(verdict: str | None, connected: bool) -> str:
    """A finished session's check status: passed when the link is fit for a
    hearing (good, or degraded with the reasons recorded), failed otherwise."""
    if not connected or verdict not in (Verdict.GOOD, Verdict.DEGRADED):
        return CheckStatus.FAILED
    return CheckStatus.PASSED


def overlaps(a_start: dt.datetime, a_end: dt.datetime, b_start: dt.datetime, b_end: dt.datetime) -> bool:
    """Half-open intervals [start, end) overlap (back-to-back bookings do not)."""
    return a_start < b_end and b_start < a_end
