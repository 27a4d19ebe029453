"""Agents for the diagnosis tests (issue 12, part 2): a gateway that stores the sessions' caller
reports as the hub does, so the controller's diagnosis runs as it does with real agents (those:
tests/test_diagnosis_netlab.py)."""
from __future__ import annotations

from controller.store import agents as agents_repo
from tests.controller_kit import RecordingGateway

REF = "dc-ref-1"


class SideAgents(RecordingGateway):
    """Every sample terminal online, the reference included; a side session's caller report is stored
    at once from `side` ({terminal: report}; a terminal not in it stays silent), and an on-demand test's
    from `pair` when it is set."""

    def __init__(self, ctl_ref):
        super().__init__()
        self.ctl_ref = ctl_ref
        self.side: dict[str, dict] = {}
        self.pair: dict | None = None       # an on-demand test's caller report, stored at once when set
        self.all_online = {"court-almaty-1", "court-almaty-2", "court-kyzylorda-1", "sizo-almaty-1",
                           "sizo-almaty-2", "sizo-kyzylorda-1", REF}

    def online(self) -> set[str]:
        return self.all_online - self.offline

    async def start_session(self, *, session_id, caller, callee, kind, profile, duration_s, capacity=False) -> None:
        await super().start_session(session_id=session_id, caller=caller, callee=callee, kind=kind,
                                    profile=profile, duration_s=duration_s, capacity=capacity)
        report = self.side.get(caller) if session_id.startswith("diag-") else self.pair
        if not session_id.startswith("diag-") and report is None:
            return
        ctl = self.ctl_ref()
        async with ctl.db.transaction() as conn:
            await agents_repo.save_session(conn, agents_repo.SessionRow(session_id, caller, callee, kind, profile,
                                                                        float(duration_s), "started"))
            if report is not None:
                await agents_repo.store_reports(conn, [agents_repo.NewReport(
                    caller, f"r-{session_id}", "session", session_id, {"role": "caller", "report": report}, None)])
