"""A controller and one real agent per site of a StarLab (tests/netlab/star.py): the set-up the
netlab tests of diagnosis (issue 12) and of every participant's live flow (issue 13) share.

    async with star_controller(lab, tmp_path, TERMINALS, settings, ("sec", "secretary")) as (app, base, http):
        ...   # base: http://<court's management address>:<port>; http carries the user's token

The controller listens on each site's management address (each site reaches it over its own veth),
the registry is the sample sites file, and each terminal runs `vks-agent run` inside its site's
namespace with its own token; the agents are online when the block begins. Everything is stopped
and the lab closed when it ends.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from contract import configfile, wire
from controller.app import create_app
from controller.keys import DB_KEY, GATEWAY_KEY
from controller.models import SitesFile
from controller.settings import ControllerSettings
from controller.store import agents as agent_store
from controller.store import registry, users
from tests.netlab.star import StarLab
from tests.procs import REPO, eventually, free_port

SITES = REPO / "configs" / "sites.yaml"


@contextlib.asynccontextmanager
async def star_controller(lab: StarLab, tmp_path: Path, terminals: Mapping[str, str], settings: dict[str, Any],
                          user: tuple[str, str]) -> AsyncIterator[tuple[web.Application, str, aiohttp.ClientSession]]:
    """(app, base URL, a client signed in as `user` (name, role)) over a started lab: `terminals`
    maps a site to its terminal; the court's site is "court"; `settings` are the controller's, its
    database and listen address added here."""
    await asyncio.to_thread(lab.start)
    runner = http = None
    procs: list[subprocess.Popen] = []
    try:
        port = free_port()
        app = create_app(ControllerSettings.model_validate({
            "db": f"sqlite:///{tmp_path}/controller.sqlite", "listen": f"{lab.mgmt_root('court')}:{port}",
            **settings}))
        runner = web.AppRunner(app)
        await runner.setup()
        for site in terminals:                      # each site reaches the root over its own veth
            await web.TCPSite(runner, lab.mgmt_root(site), port).start()
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with app[DB_KEY].transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, user[0], user[1], now)
            token = await users.issue_token(conn, u["id"], now)
            tokens = {t: (await agent_store.issue_token(conn, t))[1] for t in terminals.values()}
        for site, terminal in terminals.items():
            cfg = tmp_path / f"{terminal}.yaml"
            cfg.write_text(json.dumps({
                "terminal_id": terminal, "role": "courtroom" if site == "court" else "institution",
                "controller": {"url": f"ws://{lab.mgmt_root(site)}:{port}{wire.WS_PATH}", "token": tokens[terminal],
                               "outbox_path": str(tmp_path / f"{terminal}.outbox"), "heartbeat_s": 0.5},
                "session": {"host_addresses": [lab.addr(site)]}}))
            with (tmp_path / f"{terminal}.log").open("ab") as log:
                procs.append(lab.popen(site, [sys.executable, "-m", "agent.cli", "-v", "run", "--config", str(cfg)],
                                       stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        await eventually(lambda: set(terminals.values()) <= app[GATEWAY_KEY].online(), 30, 0.1, "agents online")
        http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
        yield app, f"http://{lab.mgmt_root('court')}:{port}", http
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
