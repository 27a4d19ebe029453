"""Which side (issue 12, part 2) with real parts: the controller (in this process) and three real
`vks-agent run` processes in a star netlab (tests/netlab/star.py) - the court's courtroom, the SIZO
and the reference terminal in the data centre, each site behind its own access link. The SIZO's
access link loses 7 % each way: an on-demand court <-> SIZO test is unusable, and the diagnosis it
starts finds the SIZO's side losing about 7 % toward the data centre while the court's side is
clean - `access_link_b` naming the SIZO.

The sessions use the light `monitor` media profile (320x180 at 10 fps; the hearing profile is too
heavy for three agents and two sessions at the reference on this 2-core machine), each judged by
the thresholds of the profile it ran with.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from controller.keys import DIAGNOSIS_KEY
from tests.netlab.fixtures import netlab_mark
from tests.netlab.star import StarLab
from tests.procs import eventually
from tests.star_kit import star_controller

pytestmark = [*netlab_mark, pytest.mark.timeout(240)]
COURT, SIZO, REF = "court-almaty-1", "sizo-almaty-1", "dc-ref-1"
TERMINALS = {"court": COURT, "sizo": SIZO, "dc": REF}
SETTINGS = {"scheduler": {"poll_s": 0.2, "retry_s": 1, "result_grace_s": 30},
            "checks": {"test_profile": "monitor", "test_duration_s": 10},
            "diagnosis": {"profile": "monitor", "duration_s": 10, "result_grace_s": 30}}
LOSS = 0.07


async def test_the_lossy_sizo_access_link_is_named_against_the_data_centre(tmp_path):
    lab = StarLab({"court": {"delay_ms": 5}, "sizo": {"delay_ms": 5, "loss": LOSS}, "dc": {"delay_ms": 2}},
                  seed=12)
    async with star_controller(lab, tmp_path, TERMINALS, SETTINGS, ("tech", "technician")) as (app, base, http):
        async with http.post(f"{base}/api/v1/tests", json={"caller": COURT, "callee": SIZO, "profile": "monitor",
                                                           "duration_s": 10}) as resp:
            assert resp.status == 202, await resp.text()
            sid = (await resp.json())["id"]

        async def done():
            async with http.get(f"{base}/api/v1/tests/{sid}") as resp:
                got = await resp.json()
            return got if got.get("diagnosis") == "done" else None
        try:
            got = await eventually(done, 150, 0.5, "the diagnosis done")
        except AssertionError:
            tails = "\n".join(f"--- {t}\n" + "\n".join((tmp_path / f"{t}.log").read_text(errors="replace")
                                                     .splitlines()[-15:]) for t in TERMINALS.values())
            raise AssertionError(f"no diagnosis in time\n{tails}") from None
        truth = await asyncio.to_thread(lab.truth)

        # The pair: unusable, the loss of the SIZO's link in both directions.
        assert got["status"] == "done" and got["verdict"] == "unusable", got["reasons"]
        pair = got["report"]
        assert pair["path_type"] == "host"
        for d in ("inbound", "outbound"):
            assert 0.03 < pair[d]["loss_ratio"] < 0.12, (d, pair[d]["loss_ratio"])
        # Each side against the reference: the SIZO's ~7 %, the court's clean.
        f = got["finding"]
        assert (f["code"], f["side"], f["segment"]) == ("access_link_b", SIZO, "b"), f
        assert f["figures"]["reference"] == REF
        assert 0.03 < f["figures"]["b"]["loss_ratio"] < 0.12, f["figures"]
        assert f["figures"]["a"]["verdict"] == "good" and f["figures"]["a"]["loss_ratio"] < 0.01, f["figures"]
        assert f["text"].startswith("СИЗО ДС-70/1 г. Алматы's access link loses ")
        assert f["text"].endswith("Медеуский районный суд г. Алматы's side is clean")
        # The router dropped on the SIZO's link only.
        assert truth["court"]["up"]["dropped"] == truth["court"]["down"]["dropped"] == 0
        assert truth["dc"]["up"]["dropped"] == truth["dc"]["down"]["dropped"] == 0
        assert 0.04 < truth["sizo"]["up"]["loss_ratio"] < 0.10 and 0.04 < truth["sizo"]["down"]["loss_ratio"] < 0.10
        assert app[DIAGNOSIS_KEY].waiting == 0
        print(json.dumps({"pair_loss": {d: pair[d]["loss_ratio"] for d in ("inbound", "outbound")},
                          "finding": {k: f[k] for k in ("code", "side", "text")}, "figures": f["figures"],
                          "router": truth}, ensure_ascii=False))
