"""Recurring dropouts on one of two remote participants (issue 13 parts 4 and 5) with real parts: the
controller (in this process) and three real `vks-agent run` processes in a star netlab
(tests/netlab/star.py) - the courtroom, the SIZO and a colony's cabinet, each site behind its own
access link. The router blacks out the colony's link 1.5 s in every 5 s (timed by the router):

- the agents report each second's longest gap in packet arrival (`max_gap_ms`), and the gaps they
  report are the router's own (its truth: the gaps between the packets of each RTP stream it
  delivered, timed as it wrote them);
- the detector recommends a break for the colony's link within 2 periods + 2.5 s of the first
  dropout (plus the reporting's lag), the break naming that terminal;
- the SIZO's link, untouched, stays monitored and its quality keeps flowing meanwhile.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest

from tests.netlab.fixtures import netlab_mark
from tests.netlab.star import StarLab
from tests.procs import eventually
from tests.star_kit import star_controller

pytestmark = [*netlab_mark, pytest.mark.timeout(240)]

COURT, SIZO, OTHER = "court-almaty-1", "sizo-almaty-1", "inst-karaganda-1"
TERMINALS = {"court": COURT, "sizo": SIZO, "colony": OTHER}
PERIOD, DROPOUT = 5.0, 1.5
SETTINGS = {"scheduler": {"poll_s": 0.2, "retry_s": 1}, "diagnosis": {"enabled": False}, "live": {"reconcile_s": 0.5}}
# The break is due when the third dropout's end is reported: 2 periods + the dropout, its second
# reported a second later (detector docstring); the agents' report batching and the controller's
# loop add up to ~1 s more.
BOUND_S = 2 * PERIOD + 2.5 + 1.5


def _t(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def part(lv: dict, terminal: str) -> dict:
    return next(p for p in lv["participants"] if p["terminal_id"] == terminal)


def gaps(intervals: list[dict], direction: str) -> list[float]:
    return [iv[direction]["max_gap_ms"] / 1000.0 for iv in intervals
            if iv.get(direction) and (iv[direction].get("max_gap_ms") or 0) >= 1000]


async def test_recurring_dropouts_on_one_participant_break_it_and_the_other_flows(tmp_path):
    lab = StarLab({site: {"delay_ms": 5} for site in TERMINALS}, seed=13)
    async with star_controller(lab, tmp_path, TERMINALS, SETTINGS, ("sec", "secretary")) as (app, base, http):
        base += "/api/v1"
        now = dt.datetime.now(dt.UTC)

        async def api(method: str, path: str, body=None):
            async with http.request(method, base + path, json=body) as r:
                return r.status, await r.json()

        _, rooms = await api("GET", "/rooms?institution_id=almaty-medeu-district")
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        status, h = await api("POST", "/hearings", {
            "case_number": "1-13/2026", "room_id": room, "duration_min": 60,
            "start_utc": (now + dt.timedelta(hours=2)).isoformat(),
            "participants": [{"terminal_id": SIZO}, {"terminal_id": OTHER}]})
        assert status == 201, h
        hid = h["id"]
        assert (await api("POST", f"/hearings/{hid}/start"))[0] == 200

        async def live_when(pred, timeout: float, what: str) -> dict:
            async def check():
                lv = (await api("GET", f"/hearings/{hid}/live"))[1]
                return lv if pred(lv) else None
            return await eventually(check, timeout, 0.25, what)

        await live_when(lambda lv: len(lv["participants"]) == 2 and all(
            p["state"] == "monitoring" and len(p["intervals"]) >= 5 for p in lv["participants"]), 60,
            "both participants monitored")
        await asyncio.sleep(2)

        # The colony's access link: 1.5 s blacked out in every 5 s, both ways, for a minute.
        t0 = time.time()
        await asyncio.to_thread(lab.blackout, "colony", "both", seconds=DROPOUT, every=PERIOD, times=12)

        async def the_break():
            return next((e for e in (await api("GET", f"/hearings/{hid}/events"))[1]["items"]
                         if e["kind"] == "break"), None)
        brk = await eventually(the_break, 60, 0.25, "a break for the recurring dropouts")
        lv = (await api("GET", f"/hearings/{hid}/live"))[1]
        await asyncio.to_thread(lab.restore, "colony")
        took = _t(brk["at"]) - t0
        d = brk["detail"]
        assert d["terminal_id"] == OTHER and d["terminal_name"] == "АК-159/1, кабинет ВКС", d
        assert d["kind"] in ("dropouts", "unusable"), d
        assert took <= BOUND_S, (took, d)
        other = part(lv, OTHER)
        assert other["state"] == "reconnecting" and other["banner"]["en"].startswith(
            "Connection to АК-159/1, кабинет ВКС lost - break recommended")

        # The SIZO's link: untouched - monitoring, no break, its seconds keep coming.
        sizo = part(lv, SIZO)
        assert sizo["state"] == "monitoring" and sizo["break"] is None and lv["state"] == "monitoring"
        seen = {(iv["session_id"], iv["t"]) for iv in sizo["intervals"]}
        lv = await live_when(lambda lv: len({(iv["session_id"], iv["t"]) for iv in part(lv, SIZO)["intervals"]}
                                            - seen) >= 4, 20, "the SIZO's quality keeps flowing")
        assert part(lv, SIZO)["state"] == "monitoring"
        assert not gaps(part(lv, SIZO)["intervals"], "inbound")

        # The gaps the agents reported are the router's: what the court received from the colony
        # (its `inbound`, the colony's uplink) and what the colony received (`outbound`, relayed).
        # The agents report their audio's gaps, timed by the kernel as each datagram arrived; the
        # router times each RTP stream's gaps as it wrote them to the site: the same gaps, to the
        # millisecond, whatever the load on either side.
        truth = await asyncio.to_thread(lab.truth)
        ivs = other["intervals"]
        for direction, link in (("inbound", "up"), ("outbound", "down")):
            reported = gaps(ivs, direction)
            assert reported, (direction, ivs[-12:])
            streams = [gs for gs in truth["colony"][link]["stream_gaps_s"].values() if max(gs) >= DROPOUT - 0.1]
            assert streams, truth["colony"][link]
            # One of the router's streams (the audio) has every gap the agent reported.
            assert any(all(any(abs(g - r) <= 0.005 for r in gs) for g in reported) for gs in streams), (
                direction, reported, streams)
        print(json.dumps({"to_break_s": round(took, 2), "kind": d["kind"], "evidence": d.get("dropout_starts"),
                          "reported_gaps_s": gaps(ivs, "inbound"), "router_gaps_s": truth["colony"]["up"]["gaps_s"],
                          "router_stream_gaps_s": truth["colony"]["up"]["stream_gaps_s"]}, ensure_ascii=False))
