"""What `vks-agent run` keeps around its loops: the /metrics endpoint, the periodic health check
(whose latest result the link's heartbeats carry), and systemd's READY/WATCHDOG/STOPPING
(contract.sdnotify).

- The /metrics endpoint's app is agent/metrics_http.py's `metrics_app` (also mounted on the
  responder's app).
- `parse_listen(text)`: the `metrics.listen` setting, 'HOST:PORT' or off.
- `Monitor(settings, metrics)`: `start()` once the daemon's outbox and link exist (listens,
  loads the quality model off the event loop, starts the health, main-heartbeat and watchdog
  loops, then READY=1); `stop()` first thing on shutdown (STOPPING=1, every loop cancelled and
  awaited, the endpoint closed); idempotent.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

from agent.health import HealthChecker
from agent.link import health_payload
from agent.metrics import AgentMetrics
from agent.metrics_http import metrics_app
from agent.settings import AgentSettings
from contract import jobs, sdnotify
from contract.reports import Health

log = logging.getLogger(__name__)

# The main loops must show progress this often, or the watchdog stops vouching for them.
MAIN_SILENCE_S = 30.0
# The health loop may be late by this much beyond its own interval.
HEALTH_GRACE_S = 60.0


def parse_listen(text: str) -> tuple[str, int] | None:
    """'HOST:PORT' -> (host, port); '' or 'off' -> None (no endpoint)."""
    text = (text or "").strip()
    if not text or text.lower() in ("off", "none", "disabled"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics.listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Monitor:
    """The daemon's metrics endpoint, health loop and systemd notifications; `main_alive` says
    whether the daemon's own loops are still running (the watchdog pings only while they are)."""

    def __init__(self, settings: AgentSettings, metrics: AgentMetrics, *,
                 notifier: sdnotify.Notifier | None = None, main_alive: Callable[[], bool] = lambda: True,
                 devices_in_use: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier or sdnotify.Notifier.from_env()
        self.watchdog = sdnotify.Watchdog(self.notifier)
        self.main_alive = main_alive
        self.devices_in_use = devices_in_use      # the health check then leaves the devices alone
        self._health_hb = self.watchdog.heartbeat("health", settings.health.interval_s + HEALTH_GRACE_S)
        self._main_hb = self.watchdog.heartbeat("main", MAIN_SILENCE_S)
        self._checker: HealthChecker | None = None
        self._last_health: Health | None = None
        self._last_health_at = 0.0
        self._health_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._jobs = jobs.scheduler("monitor", close_timeout=2.0)
        self._stopped = False
        self.address: tuple[str, int] | None = None

    async def health(self) -> Health:
        """The latest health result, checked again when older than `health.interval_s` and read
        into its typed model once (the link's heartbeat and the metrics take it as it is)."""
        async with self._health_lock:
            age = time.monotonic() - self._last_health_at
            if self._last_health is None or age >= self.settings.health.interval_s:
                if self._checker is None:
                    self._checker = HealthChecker(self.settings, self.devices_in_use)
                result = health_payload(await self._checker.check_or_unknown())
                self._last_health, self._last_health_at = result, time.monotonic()
                self.metrics.observe_health(result)
                self._health_hb.beat()
            return self._last_health

    async def _health_loop(self) -> None:
        while True:
            await self.health()
            await asyncio.sleep(max(1.0, self.settings.health.interval_s - (time.monotonic() - self._last_health_at)))

    async def _main_loop(self) -> None:
        while True:
            if self.main_alive():
                self._main_hb.beat()
            await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        try:
            listen = parse_listen(self.settings.metrics.listen)
        except ValueError as exc:
            log.error("%s: no metrics endpoint", exc)
            return
        if listen is None:
            return
        runner = web.AppRunner(metrics_app(self.metrics), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, listen[0], listen[1])
            await site.start()
        except OSError as exc:
            # The terminal's work matters more than its metrics: go on without them.
            log.error("metrics endpoint not started: cannot listen on %s:%d: %s", *listen, exc.strerror)
            await runner.cleanup()
            return
        self._runner = runner
        bound = runner.addresses[0] if runner.addresses else listen
        self.address = (str(bound[0]), int(bound[1]))
        log.info("metrics on http://%s:%d/metrics", *self.address)

    async def start(self) -> None:
        """Listen, load the quality model, start the loops, then tell systemd READY=1."""
        await self._listen()
        await self.metrics.load_thresholds()
        await self._jobs.spawn(self._health_loop(), name="health")
        await self._jobs.spawn(self._main_loop(), name="main-heartbeat")
        await self._jobs.spawn(self.watchdog.run(), name="watchdog")
        where = f"{self.address[0]}:{self.address[1]}" if self.address else "off"
        self.notifier.ready(f"running; metrics {where}")

    async def stop(self) -> None:
        """STOPPING=1, cancel and await every loop, close the endpoint. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.notifier.stopping()
        await self._jobs.close()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        self.notifier.close()

