"""A hearing monitored live across the impaired link: the real controller (in this process,
listening on the lab's management address) and two real `vks-agent run` processes, one in each
namespace of `Lab(mgmt=True)`; media crosses the router, the controller link does not.

Used by tests/test_live_netlab.py (assertions) and benchmarks/breaks.py (figures).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import shlex
import subprocess
import sys
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
from tests.netlab.lab import Lab
from tests.procs import REPO, eventually, free_port

SITES = REPO / "configs" / "sites.yaml"
COURT, SIZO = "court-almaty-1", "sizo-almaty-1"
HOOK_WRITER = ("import json, os, sys, time; open(sys.argv[1], 'a', encoding='utf-8').write(json.dumps("
               "{'event': os.environ['VKS_EVENT'], 'hearing': os.environ['VKS_HEARING'], "
               "'ru': os.environ['VKS_MESSAGE_RU'], 'kk': os.environ['VKS_MESSAGE_KK'], 't': time.time()}, "
               "ensure_ascii=False) + '\\n')")


class LiveLab:
    """`async with LiveLab(tmp_path) as ll:` - lab, controller, agents online, a hearing started."""

    def __init__(self, workdir: Path, *, impair: Any = None, live: dict | None = None, seed: int = 7,
                 start: bool = True):
        self.workdir = workdir
        self.impair = impair
        self.live_settings = {"reconcile_s": 0.5, **(live or {})}
        self.seed = seed
        self.start_hearing = start
        self.lab: Lab | None = None
        self.procs: list[subprocess.Popen] = []
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None
        self.hid: int | None = None

    # -- set-up ----------------------------------------------------------------------------------
    async def __aenter__(self) -> LiveLab:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self.lab = Lab(self.impair, mgmt=True, seed=self.seed)
        await asyncio.to_thread(self.lab.start)
        port = free_port()
        settings = ControllerSettings.model_validate({
            "db": f"sqlite:///{self.workdir}/controller.sqlite", "listen": f"{self.lab.mgmt_root}:{port}",
            "scheduler": {"poll_s": 0.2, "retry_s": 1},
            "checks": {"test_duration_s": 2, "test_profile": "monitor", "preconnect_duration_s": 2},
            "live": self.live_settings})
        self.app = create_app(settings)
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.lab.mgmt_root, port).start()
        self.base = f"http://{self.lab.mgmt_root}:{port}"
        db = self.app[DB_KEY]
        now = dt.datetime.now(dt.UTC)
        sites = configfile.validate(SitesFile, configfile.read_yaml(SITES), SITES)
        async with db.transaction() as conn:
            await registry.import_sites(conn, sites.model_dump()["institutions"], now)
            u = await users.create_user(conn, "sec", "secretary", now)
            self.token = await users.issue_token(conn, u["id"], now)
            c = await users.create_user(conn, "coord", "coordinator", now)
            self.coord_token = await users.issue_token(conn, c["id"], now)
            tokens = {t: (await agent_store.issue_token(conn, t))[1] for t in (COURT, SIZO)}
        self.hook_files = {COURT: self.workdir / "hooks-court.jsonl", SIZO: self.workdir / "hooks-sizo.jsonl"}
        for terminal, side in ((COURT, "a"), (SIZO, "b")):
            hook = shlex.join([sys.executable, "-c", HOOK_WRITER, str(self.hook_files[terminal])])
            cfg = self.workdir / f"{terminal}.yaml"
            cfg.write_text(json.dumps({
                "terminal_id": terminal, "role": "courtroom" if terminal == COURT else "institution",
                "controller": {"url": f"ws://{self.lab.mgmt_root}:{port}{wire.WS_PATH}", "token": tokens[terminal],
                               "outbox_path": str(self.workdir / f"{terminal}.outbox"), "heartbeat_s": 0.5},
                "session": {"host_addresses": [self.lab.addr(side)]},
                "hooks": {"on_break": hook, "on_reconnect": hook, "on_resume": hook, "timeout_s": 5}}))
            with (self.workdir / f"{terminal}.log").open("ab") as log:     # the child keeps its own copy
                self.procs.append(self.lab.popen(side, [sys.executable, "-m", "agent.cli", "-v", "run", "--config",
                                                        str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO))
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"})
        await self.until(lambda: {COURT, SIZO} <= self.app[GATEWAY_KEY].online(), 30, "agents online")
        status, rooms = await self.api("GET", "/api/v1/rooms?institution_id=almaty-medeu-district")
        room = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        status, h = await self.api("POST", "/api/v1/hearings", {
            "case_number": "1-22/2026", "room_id": room, "duration_min": 60,
            "start_utc": (now + dt.timedelta(hours=2)).isoformat(), "participants": [{"terminal_id": SIZO}]})
        assert status == 201, h
        self.hid = h["id"]
        if self.start_hearing:
            status, h = await self.api("POST", f"/api/v1/hearings/{self.hid}/start")
            assert status == 200, h
            await self.until_live(lambda lv: lv["state"] == "monitoring" and len(lv["intervals"]) >= 3, 40,
                                  "monitoring with intervals")

    async def __aexit__(self, *exc) -> None:
        if self.http is not None:
            await self.http.close()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                await asyncio.to_thread(p.wait, 15)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.lab is not None:
            await asyncio.to_thread(self.lab.close)

    # -- helpers ---------------------------------------------------------------------------------
    async def api(self, method: str, path: str, body: dict | None = None, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async def live(self) -> dict:
        status, lv = await self.api("GET", f"/api/v1/hearings/{self.hid}/live")
        assert status == 200, lv
        return lv

    async def events(self) -> list[dict]:
        return (await self.api("GET", f"/api/v1/hearings/{self.hid}/events"))[1]["items"]

    async def until(self, pred, timeout: float, what: str):
        try:
            return await eventually(pred, timeout, 0.1, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs_tail()}") from None

    async def until_live(self, pred, timeout: float, what: str) -> dict:
        async def check():
            lv = await self.live()
            return lv if pred(lv) else None
        return await self.until(check, timeout, what)

    async def until_event(self, kind: str, timeout: float, after_id: int = 0) -> dict:
        async def check():
            return next((e for e in await self.events() if e["kind"] == kind and e["id"] > after_id), None)
        return await self.until(check, timeout, f"event {kind}")

    def hooks(self, terminal: str) -> list[dict]:
        path = self.hook_files[terminal]
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def logs_tail(self, n: int = 15) -> str:
        out = []
        for t in (COURT, SIZO):
            p = self.workdir / f"{t}.log"
            if p.exists():
                out.append(f"--- {t}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)
