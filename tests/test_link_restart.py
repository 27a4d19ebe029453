"""Nothing lost, nothing doubled: a real `vks-controller serve` process is killed (SIGKILL) while
an agent streams reports; the agent keeps producing into its durable outbox while the
controller is down; after a restart every report is stored exactly once."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from agent.link import Link
from agent.outbox import Outbox
from controller.store import agents as store
from controller.store.db import Database
from tests.test_link_hub import Recorder, agent_settings, eventually, free_port

REPO = Path(__file__).resolve().parent.parent


def controller_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env["VKS_CONTROLLER_CONFIG"] = str(tmp_path / "controller.yaml")
    (tmp_path / "controller.yaml").write_text("sites_file: null\n")
    return env


def issue_token(db_url: str, terminal_id: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "controller.cli", "terminal", "token", terminal_id,
                          "--db", db_url], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class ControllerProcess:
    def __init__(self, db_url: str, port: int, env: dict, log: Path):
        self.db_url, self.port, self.env, self.log = db_url, port, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve", "--listen",
                                      f"127.0.0.1:{self.port}", "--db", self.db_url],
                                     env=self.env, cwd=REPO, stdout=self._logf, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._logf.close()

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._logf.close()
        return self.proc.returncode if self.proc else None


async def test_reports_produced_while_the_controller_is_down_are_stored_once_after_restart(tmp_path):
    db_url = f"sqlite:///{tmp_path}/controller.sqlite"
    env = controller_env(tmp_path)
    token = await asyncio.to_thread(issue_token, db_url, "court-1", env)
    # The session the reports belong to, as the controller commanded it (issue 11: a report naming
    # a session is taken only from that session's caller or callee).
    db = Database(db_url)
    try:
        async with db.transaction() as conn:
            await store.save_session(conn, store.SessionRow("s-long", "court-1", "sizo-1", "test", None, 3600.0,
                                                            "started"))
    finally:
        await db.close()
    port = free_port()
    ctl = ControllerProcess(db_url, port, env, tmp_path / "controller.log")
    ctl.start()
    settings = agent_settings(tmp_path, "court-1", f"ws://127.0.0.1:{port}", token)
    outbox = await Outbox(settings.controller.outbox_path).open()
    link = Link(settings, outbox, Recorder(), backoff_initial=0.1, backoff_max=1.0)
    link_task = asyncio.create_task(link.run())
    produced: list[str] = []
    stop_producing = asyncio.Event()

    async def produce():
        i = 0
        while not stop_producing.is_set():
            rid = f"iv-{i}"
            await outbox.put(rid, "interval", {"i": i, "loss_ratio": 0.0}, session_id="s-long")
            produced.append(rid)
            i += 1
            await asyncio.sleep(0.005)

    producer = asyncio.create_task(produce())
    try:
        await asyncio.wait_for(link.connected.wait(), 60)
        await eventually(lambda: len(produced) > 200, timeout=30)
        await asyncio.to_thread(ctl.kill)            # mid-stream: some stored but not acked
        # The link sees the socket close once it has read the acks that arrived before it. It took
        # over 10 s in CI once, when the reader deleted each acked report itself (an fsync each); the
        # drain now deletes a burst in one transaction. The bound stays generous: what this test holds
        # is below, nothing lost, nothing doubled.
        await eventually(lambda: not link.connected.is_set(), timeout=60)
        down_at = len(produced)
        await eventually(lambda: len(produced) > down_at + 200, timeout=30)   # still producing
        assert len(outbox) > 0
        ctl.start()
        await asyncio.wait_for(link.connected.wait(), 60)
        await eventually(lambda: len(produced) > down_at + 400, timeout=30)
        stop_producing.set()
        await producer
        await eventually(lambda: len(outbox) == 0, timeout=60, step=0.1)
    finally:
        stop_producing.set()
        await asyncio.gather(producer, return_exceptions=True)
        await link.close()
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        await outbox.close()
        rc = await asyncio.to_thread(ctl.stop)
    assert rc == 0
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await store.reports_for_session(conn, "s-long", "interval")
    finally:
        await db.close()
    ids = [r["report_id"] for r in rows]
    assert len(ids) == len(set(ids))                 # no duplicates
    assert set(ids) == set(produced)                 # none lost
    assert len(ids) == len(produced)
    assert link.connects == 2
