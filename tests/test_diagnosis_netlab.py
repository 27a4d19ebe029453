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
import datetime as dt
import json
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from contract import configfile, wire
from controller.app import create_app
from controller.keys import DB_KEY, DIAGNOSIS_KEY, GATEWAY_KEY
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import agents as agent_store
from controller.store import registry, users
from tests.netlab.fixtures import netlab_mark
from tests.netlab.star import StarLab
from tests.procs import REPO, eventually, free_port

pytestmark = [*netlab_mark, pytest.mark.timeout(240)]
SITES = REPO / "configs" / "sites.yaml"
COURT, SIZO, REF = "court-almaty-1", "sizo-almaty-1", "dc-ref-1"
TERMINALS = {"court": COURT, "sizo": SIZO, "dc": REF}
LOSS = 0.07


async def test_the_lossy_sizo_access_link_is_named_against_the_data_centre(tmp_path):
    lab = StarLab({"court": {"delay_ms": 5}, "sizo": {"delay_ms": 5, "loss": LOSS}, "dc": {"delay_ms": 2}},
                  seed=12)
    await asyncio.to_thread(lab.start)
    runner = http = None
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        settings = ControllerSettings.model_validate({
            "db": f"sqlite:///{tmp_path}/controller.sqlite", "listen": f"{lab.mgmt_root('court')}:{port}",
            "scheduler": {"poll_s": 0.2, "retry_s": 1, "result_grace_s": 30},
            "checks": {"test_profile": "monitor", "test_duration_s": 10},
            "diagnosis": {"profile": "monitor", "duration_s": 10, "result_grace_s": 30}})
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        for site in TERMINALS:                      # each site reaches the root over its own veth
            await web.TCPSite(runner, lab.mgmt_root(site), port).start()
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with app[DB_KEY].transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, "tech", "technician", now)
            token = await users.issue_token(conn, u["id"], now)
            tokens = {t: (await agent_store.issue_token(conn, t))[1] for t in TERMINALS.values()}
        for site, terminal in TERMINALS.items():
            cfg = tmp_path / f"{terminal}.yaml"
            cfg.write_text(json.dumps({
                "terminal_id": terminal, "role": "courtroom" if site == "court" else "institution",
                "controller": {"url": f"ws://{lab.mgmt_root(site)}:{port}{wire.WS_PATH}", "token": tokens[terminal],
                               "outbox_path": str(tmp_path / f"{terminal}.outbox"), "heartbeat_s": 0.5},
                "session": {"host_addresses": [lab.addr(site)]}}))
            with (tmp_path / f"{terminal}.log").open("ab") as log:
                procs.append(lab.popen(site, [sys.executable, "-m", "agent.cli", "-v", "run", "--config", str(cfg)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        await eventually(lambda: set(TERMINALS.values()) <= app[GATEWAY_KEY].online(), 30, 0.1, "agents online")

        base = f"http://{lab.mgmt_root('court')}:{port}"
        http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
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
    finally:
        if http is not None:
            await http.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                await asyncio.to_thread(p.wait, 15)
            except subprocess.TimeoutExpired:
                p.kill()
        if runner is not None:
            await runner.cleanup()
        await asyncio.to_thread(lab.close)
