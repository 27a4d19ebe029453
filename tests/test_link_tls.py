"""TLS on the agent link (rule 5): the agent connects over wss:// trusting only the CA named in
`controller.ca_file`; a controller whose certificate that CA did not sign is refused."""
from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from agent.link import Link
from agent.outbox import Outbox
from tests.test_link_hub import Controller, Recorder, agent_settings, count, eventually

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def make_ca(dir: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    ca_key, ca = dir / f"{name}-ca.key", dir / f"{name}-ca.pem"
    key, csr, cert = dir / f"{name}.key", dir / f"{name}.csr", dir / f"{name}.pem"
    ext = dir / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", f"/CN={name} test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


class TlsController(Controller):
    def __init__(self, *a, cert: Path, key: Path, **kw):
        super().__init__(*a, **kw)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    async def start(self):
        from controller.agent_api import setup_agent_api
        from controller.hub import Hub
        from controller.store.db import Database
        from controller.store.migrate import migrate
        self.db = Database(self.db_url)
        await migrate(self.db)
        self.app = web.Application()
        setup_agent_api(self.app, Hub(self.db, instance_id=self.instance_id, results=self.results))
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ctx).start()
        return self


async def test_agent_connects_over_tls_only_to_a_controller_its_ca_signed(tmp_path):
    ca, cert, key = make_ca(tmp_path, "good")
    other_ca, _, _ = make_ca(tmp_path, "other")
    c = await TlsController(f"sqlite:///{tmp_path}/c.sqlite", cert=cert, key=key).start()
    links = []
    try:
        token = await c.token("court-1")
        # Trusting another CA: refused, retried, never connected.
        bad = agent_settings(tmp_path / "bad", "court-1", c.url, token, ca_file=str(other_ca))
        (tmp_path / "bad").mkdir()
        bad_box = await Outbox(bad.controller.outbox_path).open()
        bad_link = Link(bad, bad_box, Recorder(), backoff_initial=0.05, backoff_max=0.2)
        links.append((bad_link, asyncio.create_task(bad_link.run()), bad_box))
        await eventually(lambda: bad_link.last_error and "certificate" in bad_link.last_error.lower(), timeout=10)
        assert not bad_link.connected.is_set() and c.hub.online() == set()

        good = agent_settings(tmp_path, "court-1", c.url, token, ca_file=str(ca))
        box = await Outbox(good.controller.outbox_path).open()
        link = Link(good, box, Recorder(), backoff_initial=0.05, backoff_max=0.2)
        links.append((link, asyncio.create_task(link.run()), box))
        await asyncio.wait_for(link.connected.wait(), 10)
        await box.put("r1", "health", {"status": "ok"})
        await eventually(lambda: len(box) == 0)
        assert await count(c) == 1
    finally:
        for link, task, box in links:
            await link.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await box.close()
        await c.stop()
