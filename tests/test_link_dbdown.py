"""The database away for a while (issue 7): the controller keeps the agents' sockets, stores
nothing and acks nothing; the agents keep their reports; when the database is back every report
is stored once and acked. New connections meanwhile get 503, not a traceback."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from contract import wire
from tests.harness import require_or_skip
from tests.pg import PgCluster, PgUnavailable
from tests.test_link_hub import Agent, Controller, agent_settings, count, eventually

pytestmark = pytest.mark.postgres


class RestartablePg:
    """tests/pg.py's cluster, with a stop and start in between (same data directory)."""

    def __init__(self):
        try:
            self.cluster = PgCluster().start()
        except PgUnavailable as exc:
            require_or_skip(f"PostgreSQL not available: {exc}")
        self._opts = (f"-c listen_addresses=127.0.0.1 -c port={self.cluster.port} "
                      f"-c unix_socket_directories={self.cluster.tmp} -c fsync=off")

    def create_database(self, name: str) -> str:
        """The test cluster runs with synchronous_commit=off (speed), so a crash would lose the
        last commits, which production (synchronous_commit=on) does not: this database is on."""
        url = self.cluster.create_database(name)
        self.cluster.psql(f'ALTER DATABASE "{name}" SET synchronous_commit = on')
        return url

    def pause(self) -> None:
        """Crash the server (immediate stop)."""
        c = self.cluster
        c._run(str(c.bindir / "pg_ctl"), "-D", str(c.datadir), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        c = self.cluster
        c._run(str(c.bindir / "pg_ctl"), "-D", str(c.datadir), "-l", str(c.tmp / "log"), "-o", self._opts,
               "-w", "-t", "60", "start")

    def stop(self) -> None:
        self.cluster.stop()


@pytest.fixture
def pg():
    p = RestartablePg()
    yield p
    p.stop()


async def test_reports_wait_out_a_database_outage_and_are_stored_once(pg, tmp_path):
    url = pg.create_database(f"down_{uuid.uuid4().hex[:8]}")
    c = await Controller(url).start()
    token = await c.token("court-1")
    a = await Agent(agent_settings(tmp_path, "court-1", c.url, token)).start()
    try:
        await asyncio.wait_for(a.link.connected.wait(), 10)
        for i in range(10):
            await a.outbox.put(f"before-{i}", "interval", {"i": i})
        await eventually(lambda: len(a.outbox) == 0)

        await asyncio.to_thread(pg.pause)
        for i in range(10):
            await a.outbox.put(f"during-{i}", "interval", {"i": i})
        await eventually(lambda: c.hub.stats.store_errors_total > 0, timeout=20)
        assert len(a.outbox) == 10 and a.link.connected.is_set()     # kept, socket still up
        async with aiohttp.ClientSession() as http:                     # a newcomer: 503 JSON
            async with http.get(f"http://127.0.0.1:{c.port}{wire.WS_PATH}",
                                headers={"Authorization": "Bearer vkst_x"}) as resp:
                assert resp.status == 503 and (await resp.json())["error"] == "unavailable"

        await asyncio.to_thread(pg.resume)
        await eventually(lambda: len(a.outbox) == 0, timeout=60, step=0.1)
        assert await count(c) == 20
    finally:
        await a.stop()
        await c.stop()
