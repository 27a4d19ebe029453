"""The media link reordered (issue 7; blackout, loss, asymmetry and jitter are in
test_session_netlab.py and the live tests): with packets overtaking each other in the user-space
router, the report still matches the router's ground truth per direction - a packet that comes
late is counted as reordered, not lost - and the session completes."""
from __future__ import annotations

from tests.linktest import Scenario, run_session
from tests.netlab.fixtures import netlab_mark
from tests.test_session_netlab import check_against_truth

pytestmark = netlab_mark


def test_reordering_is_not_loss_and_matches_the_truth(make_lab, tmp_path):
    scenario = Scenario("reorder: delay 30 ms, jitter 15 ms", {"delay_ms": 30, "jitter_ms": 15, "reorder": True})
    report, truth, status = run_session(make_lab(), scenario, tmp_path)
    assert report["connected"], report["error"]
    # The subject here is loss and reordering. The RTT probes ride the data channel (SCTP), which
    # reads overtaking packets as gaps and resends spuriously now and then: one such probe read
    # 129 ms at the p95 (mean 78.6 ms against 62.6 ms of truth, in CI). So here the probes' median is
    # held to the truth's median, with the benchmark's target plus a quarter of the jitter (the
    # scenarios benchmarks/accuracy.py measures keep the mean and the plain target).
    rows, _ = check_against_truth(report, truth, rtt_slack_ms=scenario.impair["jitter_ms"] / 4, rtt_stat="p50")
    assert all(r.truth_lost == 0 for r in rows)              # the router dropped nothing
    assert all(r.measured_lost == 0 for r in rows), rows       # so nothing may be reported lost
    reordered = sum(s.get("reordered", 0) for s in report["streams"])
    assert reordered > 0, report["streams"]                    # and the overtaking was seen
