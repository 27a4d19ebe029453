"""Real receivers for escalation notifications: an HTTP server that records
webhook POSTs (and can answer 503 or be stopped and started again on the same
port), and a real SMTP server on loopback (aiosmtpd) that keeps each message."""
from __future__ import annotations

import asyncio
import email
import email.policy

from aiohttp import web

from tests.procs import free_port


class WebhookServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.bodies: list[bytes] = []
        self.status = 200
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.Response(status=self.status)
        self.bodies.append(await request.read())
        self.headers.append(dict(request.headers))
        self.received.append(await request.json())
        return web.json_response({"ok": True})

    async def start(self) -> WebhookServer:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class SmtpServer:
    """aiosmtpd on loopback (its own thread); `messages` are parsed e-mails."""

    def __init__(self):
        from aiosmtpd.controller import Controller
        self.messages: list[email.message.EmailMessage] = []
        self.port = free_port()
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"
        self._ctl = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self._ctl.start()
        return self

    def stop(self) -> None:
        self._ctl.stop()

    def to(self) -> list[str]:
        return sorted(str(m["To"]) for m in self.messages)


async def settle(step: float = 0.05, rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(step)
