"""The capacity ramp between real agents across a rate-limited link (issue 12, part 1).

A real responder in namespace B and a real `vks-agent test --capacity` in A, tests/netlab's
user-space router between them with one direction capped (a drop-tail queue of 150 ms). The
report's `capacity` must find the cap within 10 % in at most 12 s per direction, say that loss
or delay limited it, and find the other direction at the ceiling; the ramp's datagrams cross the
same router (the session's 5-tuple) and never enter the session's loss figures.
"""
import pytest

from tests.linktest import DIRECTION_PATH, Scenario, compare, run_session
from tests.netlab.fixtures import netlab_mark

pytestmark = netlab_mark

QUEUE_MS = 150.0
CEILING = 2500.0


def capped(path: str, rate: float) -> Scenario:
    return Scenario(f"capacity {path} {rate:g}", {path: {"rate_kbps": rate, "buffer_ms": QUEUE_MS}},
                    duration_s=5.0, profile="hearing", test_args=("--capacity",))


def check_ramp(report: dict, truth: dict, capped_direction: str, rate: float) -> dict:
    assert report["connected"], report["error"]
    cap = report["capacity"]
    assert cap["error"] is None and cap["ceiling_kbps"] == CEILING
    limited = cap[capped_direction]
    assert limited["kbps"] == pytest.approx(rate, rel=0.10), limited
    assert limited["limited_by"] in ("loss", "delay"), limited
    assert limited["duration_s"] <= 12.0, limited
    other = cap["inbound" if capped_direction == "outbound" else "outbound"]
    assert other["limited_by"] == "ceiling" and other["kbps"] == CEILING, other
    assert other["duration_s"] <= 12.0, other
    # The ramp crossed the router on the session's own 5-tuple: the one UDP flow each way carries
    # the media and the ramp's non-RTP datagrams (counted "udp_other" by the router's demultiplexing).
    for path in ("a>b", "b>a"):
        flows = truth["directions"][path]["flows"]
        assert len([f for f in flows if f["kinds"].get("rtp")]) == 1, flows
        media_flow = next(f for f in flows if f["kinds"].get("rtp"))
        assert media_flow["kinds"].get("udp_other", 0) > 100, media_flow
    # The session's loss figures are the media's alone: each stream's losses as the router counted
    # its RTP packets, although the ramp lost many datagrams on the capped way.
    rows, _ = compare(report, truth)
    for row in rows:
        assert abs(row.measured_lost - row.truth_lost) <= max(2, 0.005 * row.truth_sent), row
    return cap


@pytest.mark.parametrize(("path", "rate"), [("a>b", 500.0), ("b>a", 2000.0)])
def test_capacity_finds_the_cap(path, rate, make_lab, tmp_path):
    direction = next(d for d, p in DIRECTION_PATH.items() if p == path)
    report, truth, _ = run_session(make_lab(), capped(path, rate), tmp_path)
    check_ramp(report, truth, direction, rate)
