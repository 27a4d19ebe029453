"""A self-check's life (issue 14): created by a secretary (a link with a secret, stored hashed), opened
by the person (the page's offer starts the controller's peer), finished with the page's result (the
controller's own measurement joined, judged by the `mobile` profile), or failed when the page never
reports; written into the hearing's record, and a failed one before the hearing ends opens an
escalation (cause `self_check_failed`, one per self-check) like a failed check - resolved by the
system when a later run of the same link is no longer unusable.

`SelfCheckService` (app key SELFCHECKS_KEY) holds the running peers: at most
`selfcheck.max_sessions`, each closed at its result or by its watchdog
(duration + WATCHDOG_GRACE_S); all closed at shutdown (`ctx`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiojobs
from aiohttp import web

from contract import quality
from contract.candidates import OfferLimiter
from contract.jobs import scheduler as background
from contract.vocab import ACTIVE_HEARING_STATUSES, EscalationCause, SelfCheckStatus, Verdict
from controller.errors import Conflict, ControllerError, Invalid, NotFound
from controller.escalation import EscalationService
from controller.selfcheck import judge as judging
from controller.selfcheck.settings import SelfCheckSettings
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import selfchecks as repo
from controller.store.db import Database

if TYPE_CHECKING:
    # The peer brings aiortc and PyAV (~40 MB): imported with the first self-check, not at the
    # controller's start (a controller holding 10,000 agents may never serve one; issue 15).
    from controller.selfcheck.peer import SelfCheckPeer

log = logging.getLogger(__name__)
PROFILE = "mobile"
WATCHDOG_GRACE_S = 45.0
PATH = "/self-check"


class Gone(ControllerError):
    """The link's time is over (410)."""
    status = 410
    code = "expired"


class TooMany(ControllerError):
    """Too many offers from one address in a minute (429)."""
    status = 429
    code = "rate_limited"


class Busy(ControllerError):
    """Too many self-checks at once (503)."""
    status = 503
    code = "busy"


@dataclass
class Running:
    """A self-check's peer and the watchdog that ends it when the page never reports."""

    peer: SelfCheckPeer
    watchdog: aiojobs.Job | None = None


def url_for(base: str, secret: str) -> str:
    """The link of a secret."""
    return f"{base.rstrip('/')}{PATH}/{secret}"


class SelfCheckService:
    """Creating, starting and finishing self-checks (see the module's docstring)."""

    def __init__(self, db: Database, settings: SelfCheckSettings, clock: Callable[[], dt.datetime],
                 escalations: EscalationService, thresholds: Callable[[], dict[str, quality.Thresholds]]) -> None:
        self.db, self.cfg, self.clock = db, settings, clock
        self.escalations = escalations
        self._thresholds = thresholds
        self.running: dict[int, Running] = {}
        self.offers = OfferLimiter(settings.offers_per_minute)
        self.jobs = background("selfcheck")

    def thresholds(self) -> quality.Thresholds:
        """The `mobile` profile of the controller's thresholds file; the packaged one's when a
        site's own file has none (it predates issue 14), said in the log."""
        profiles = self._thresholds()
        if PROFILE not in profiles:
            log.warning("the thresholds file has no %r profile: the packaged one judges self-checks", PROFILE)
            profiles = quality.load_thresholds()
        return quality.select(profiles, PROFILE)

    # --- created by the secretary -------------------------------------------------------------

    async def create(self, conn, *, hearing_id: int, name: str, mode: str, expires_at: dt.datetime | None,
                     now: dt.datetime, by: str | None) -> tuple[int, str, dt.datetime]:
        """A new link of the hearing: (id, secret, expiry). Inside the caller's transaction."""
        h = await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
        if h["status"] not in ACTIVE_HEARING_STATUSES:
            raise Conflict(f"hearing {hearing_id} is {h['status']}")
        end = h["end_utc"]
        if end <= now:
            raise Conflict(f"hearing {hearing_id} has ended")
        if expires_at is None:
            expires_at = end
        elif expires_at <= now or expires_at > end:
            raise Invalid("expires_at: must be after now and not after the hearing's end", field="expires_at")
        secret = secrets.token_urlsafe(32)
        sid = await repo.create(conn, hearing_id=hearing_id, name=name, mode=mode, secret=secret,
                                expires_at=expires_at, now=now, by=by)
        await events_repo.append(conn, hearing_id, "self_check_created", now, {
            "self_check_id": sid, "name": name, "mode": mode, "by": by,
            "expires_at": hearings_repo.iso(expires_at)})
        return sid, secret, expires_at

    # --- the link ----------------------------------------------------------------------------

    async def find(self, secret: str) -> dict[str, Any]:
        """The self-check the secret opens; NotFound (unknown), Gone (expired)."""
        async with self.db.read() as conn:
            row = await repo.by_secret(conn, secret)
            if row is None:
                raise NotFound("no such self-check link")
            hearing = await hearings_repo.get_hearing(conn, row["hearing_id"])
        if repo.effective_status(row, self.clock()) == SelfCheckStatus.EXPIRED:
            raise Gone("this self-check link has expired")
        if hearing["status"] not in ACTIVE_HEARING_STATUSES:        # cancelled or held: nothing to check for
            raise Gone(f"the hearing is {hearing['status']}: this self-check link is closed")
        return {**row, "hearing": hearing}

    async def offer(self, secret: str, sdp: str, kind: str, browser: str | None, source: str) -> dict[str, str]:
        """The page's offer from `source` (an address): a fresh peer (an earlier one of the same link
        closed), its answer."""
        if not self.offers.allow(source):
            raise TooMany(f"more than {self.cfg.offers_per_minute} self-check sessions a minute from {source}")
        row = await self.find(secret)
        sid = row["id"]
        await self._drop(sid)
        if len(self.running) >= self.cfg.max_sessions:
            raise Busy("too many self-checks at once; try again in a minute")
        # The media stack, first used here: imported in a thread (a few hundred ms the event loop,
        # busy with the agents' reports, does not wait for).
        peers = await asyncio.to_thread(importlib.import_module, "controller.selfcheck.peer")
        peer = peers.SelfCheckPeer(self.cfg)
        run = self.running[sid] = Running(peer)
        try:
            answer = await peer.answer(sdp, kind)
        except peers.OfferRefused as exc:
            await self._drop(sid)
            raise Invalid(f"sdp: {exc}", field="sdp") from None
        except BaseException:
            await self._drop(sid)
            raise
        async with self.db.transaction() as conn:
            await repo.start(conn, sid, self.clock(), (browser or "")[:300] or None)
        run.watchdog = await self.jobs.spawn(self._watchdog(sid, peer), name=f"selfcheck-{sid}")
        return answer

    async def _watchdog(self, sid: int, peer: SelfCheckPeer) -> None:
        await asyncio.sleep(self.cfg.duration_s + WATCHDOG_GRACE_S)
        run = self.running.get(sid)
        if run is None or run.peer is not peer:
            return
        run.watchdog = None
        log.info("self-check %d: no result from the page in time", sid)
        await self._conclude(sid, None, peer, error="the page sent no result")

    async def _drop(self, sid: int) -> None:
        run = self.running.pop(sid, None)
        if run is None:
            return
        if run.watchdog is not None:
            await run.watchdog.close()
        await run.peer.close()

    async def result(self, secret: str, page: dict[str, Any], source: str) -> dict[str, Any]:
        """The page's result from `source` (an address): joined with the controller's measurement,
        judged, stored."""
        row = await self.find(secret)
        run = self.running.get(row["id"])
        if run is None and not page.get("connected"):
            # The page could not even start its session (its offer refused, the server unreachable
            # meanwhile): a failed self-check all the same. No session bounds these (each is a row
            # update, an event in the hearing's record, an escalation): the offers' limit does.
            if not self.offers.allow(source):
                raise TooMany(f"more than {self.cfg.offers_per_minute} self-checks a minute from {source}")
            return await self._conclude(row["id"], page, None)
        if run is None:
            raise Conflict("no self-check session is running for this link: start it first")
        if run.watchdog is not None:
            job, run.watchdog = run.watchdog, None
            await job.close()
        return await self._conclude(row["id"], page, run.peer)

    async def _conclude(self, sid: int, page: dict[str, Any] | None, peer: SelfCheckPeer | None,
                        error: str | None = None) -> dict[str, Any]:
        connected = peer is not None and peer.connected.is_set() and (page is None or page.get("connected", True))
        received = await peer.measure() if connected and peer is not None else None
        await self._drop(sid)
        page = page or {}
        camera, microphone = page.get("camera") or "ok", page.get("microphone") or "ok"
        rtt = page.get("rtt_ms")
        if rtt is None and received is not None:
            rtt = received.rtt_ms
        inbound = page.get("inbound")
        outbound = received.direction() if received is not None else None
        th = self.thresholds()
        out = judging.judge(camera=camera, microphone=microphone, inbound=inbound, outbound=outbound, rtt_ms=rtt,
                            thresholds=th, connected=connected and bool(page),
                            error=error or page.get("error"))
        status = SelfCheckStatus.DONE if connected and page else SelfCheckStatus.FAILED
        now = self.clock()
        values = {"verdict": str(out.verdict), "camera": camera, "microphone": microphone, "rtt_ms": rtt,
                  "inbound": inbound, "outbound": outbound, "path_type": page.get("path_type"),
                  "reason_codes": out.reason_codes}
        escalate = False
        async with self.db.transaction() as conn:
            row = await repo.get(conn, sid)
            if row is None:
                raise NotFound("no such self-check")
            await repo.finish(conn, sid, status=status, now=now, **values)
            hid = row["hearing_id"]
            h = await hearings_repo.get_hearing(conn, hid, for_update=True)
            await events_repo.append(conn, hid, "self_check_finished", now, {
                "self_check_id": sid, "name": row["name"], "mode": row["mode"], "status": str(status), **values})
            if (status == SelfCheckStatus.FAILED or out.verdict == Verdict.UNUSABLE) \
                    and h["status"] in ACTIVE_HEARING_STATUSES and h["end_utc"] > now:
                await self.escalations.open_in(conn, hearing_id=hid, cause=EscalationCause.SELF_CHECK_FAILED,
                                               detail={"self_check_id": sid, "name": row["name"],
                                                       "mode": row["mode"], "verdict": str(out.verdict),
                                                       "reason_codes": out.reason_codes},
                                               now=now, subject=f"self-check:{sid}")
                escalate = True
            elif status == SelfCheckStatus.DONE and out.verdict != Verdict.UNUSABLE:
                # The same person ran the check again and it holds now: their escalation is over.
                await self.escalations.auto_resolve(conn, hid, EscalationCause.SELF_CHECK_FAILED, now,
                                                    "the self-check passed on a later run", subject=f"self-check:{sid}")
        if escalate:
            self.escalations.wake()
        return {"status": str(status), "verdict": str(out.verdict), "reason_codes": out.reason_codes}

    async def close(self) -> None:
        for sid in list(self.running):
            await self._drop(sid)
        await self.jobs.close()


SELFCHECKS_KEY: web.AppKey[SelfCheckService] = web.AppKey("selfchecks", SelfCheckService)


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Close every running self-check's peer at shutdown."""
    yield
    await app[SELFCHECKS_KEY].close()
