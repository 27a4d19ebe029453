"""The act of technical impossibility (rule 18): drafted with the measured
evidence, in Kazakh and Russian, for three signatures, attached to the hearing.

- `build_content(conn, hearing_id, ...)` gathers the act's content as data
  (schema vks.act/1): the hearing (court, room, case, date and time in the
  court's local time), the reason, the timeline from the event record, the
  escalations (who was told and who answered), the measured evidence of the
  test session and the pre-connect check (loss, jitter, RTT, MOS, verdict and
  reasons per terminal pair) and the breaks of the live monitoring (rule 22).
  The content is stored with the act, so its documents are reproducible.
- `render_html(view, lang)` and `render_pdf(view, lang)` (controller.act_render)
  give the printable act in both languages, `lang` first.
- `ActService`: `draft` (the secretary asks), `draft_auto` (the escalation
  reached step 2 near the start, or a technician marked "cannot fix"), `sign`
  (head of the court office, secretary, technical specialist; once the three
  have signed the act is final: sealed by `final_sha256` over content and
  signatures, with the sha256 of each final document, and never changed again).
- `signer(user, ...)`: who gives a signature. The signed-in user signs in the role
  their account holds, under their own name; a signer with no account is entered
  by a user who may change hearings, under a free-text name that is no account's,
  in a role other than the entering account's own (that role it signs itself), and
  the act records who entered it. An act holds at most one such signature, so a
  final act carries at least two signatures given by two distinct accounts, each
  from its own account (issue 11: one account entering three "people" was one
  account signing three times). No account gives two of an act's signatures, no
  name appears on it twice (names compared by `store.acts.fold_name`).
  The final documents are rendered with no database transaction open.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from contract import reasons
from controller import act_modes, auth, event_words
from controller.act_render import LANGS, render_html, render_pdf
from controller.errors import Conflict, Forbidden, Invalid, NotFound
from controller.selfcheck import evidence as selfcheck_evidence
from controller.store import acts as repo
from controller.store import checks as checks_repo
from controller.store import escalations as esc_repo
from controller.store import events as events_repo
from controller.store import hearings as hearings_repo
from controller.store import live as live_repo
from controller.store.db import Database
from controller.store.hearings import iso

SCHEMA = "vks.act/1"
SIGNER_ROLES = repo.SIGNER_ROLES
TRIGGERS = ("not_fixed", "cannot_fix", "requested")

CAUSE_TEXT = {
    "test_failed": ("тестілеу сеансы сәтсіз", "тестовый сеанс не пройден"),
    "preconnect_failed": ("алдын ала қосылу сәтсіз", "предварительное подключение не удалось"),
    "reconnect_failed": ("қайта қосылу сәтсіз", "переподключение не удалось"),
    "agent_offline": ("терминал байланыста жоқ", "терминал не на связи"),
    "terminal_unhealthy": ("терминал ақаулы", "терминал неисправен"),
    "test_retries_failed": ("қайталанған тестілеу сеанстары сәтсіз", "повторные тестовые сеансы не пройдены"),
    "manual": ("қолмен", "вручную"),
}
CAUSE_TEXT.update(selfcheck_evidence.CAUSE_TEXT)
# Detail keys worth showing in the timeline, in this order.
DETAIL_KEYS = ("kind", "callee", "verdict", "reasons", "mos", "status", "error", "cause", "reason", "by", "note",
               "deadline", "attempt", "attempts", "duration_s", "role", "name")


def canonical(data: Any) -> bytes:
    """The canonical JSON bytes of `data` (sorted keys, no spaces, UTF-8): what the sha256 seals."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sha256(data: Any) -> str:
    """The sha256 (hex) of the canonical JSON of `data`."""
    return hashlib.sha256(canonical(data)).hexdigest()


def _local(t: dt.datetime | None, tz: str) -> str | None:
    if t is None:
        return None
    try:
        return t.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M:%S")
    except Exception:
        return t.astimezone(dt.UTC).strftime("%d.%m.%Y %H:%M:%S UTC")


def _offset(t: dt.datetime, tz: str) -> str:
    z = t.astimezone(ZoneInfo(tz)).strftime("%z")      # +0500
    return f"{z[:3]}:{z[3:]}" if len(z) == 5 else z


def _num(v: Any, fmt: str) -> str | None:
    return None if v is None else fmt.format(v)


def _summary(detail: dict, tz: str) -> str:
    parts = []
    for k in DETAIL_KEYS:
        v = detail.get(k)
        if v in (None, "", []) or (k == "reasons" and detail.get("reason_codes")):   # told in kk and ru instead
            continue
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v)
        elif isinstance(v, str) and len(v) == 20 and v.endswith("Z") and v[10] == "T":
            try:       # a UTC time of the record: shown in the court's local time like the rest
                v = _local(dt.datetime.fromisoformat(v.replace("Z", "+00:00")), tz)
            except ValueError:
                pass
        parts.append(f"{k}: {v}")
    return "; ".join(parts)[:400]


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100


def reason_text(codes: list[dict], names: dict[str, str] | None) -> dict[str, list[str]] | None:
    """{kk, ru: the reasons rendered from their codes}; None without codes (an older record)."""
    return {lang: [reasons.text(rc, lang, names=names) for rc in codes] for lang in LANGS} if codes else None


def terminal_names(h: dict, caller: str, callee: str) -> dict[str, str]:
    """{caller, callee: a name a reader knows}: a participant's terminal by its institution, the
    court's own by the court and its room (a hearing view)."""
    court = f"{h['court']['name']}, {h['room']['name']}"
    by_terminal = {p["terminal_id"]: p["institution_name"] for p in h["participants"]}
    return {"caller": by_terminal.get(caller, court), "callee": by_terminal.get(callee, court)}


def _event_reasons(detail: dict, h: dict) -> dict[str, list[str]] | None:
    """The reasons an event records (a check's result, or a finding's one code), in kk and ru with
    its terminals named."""
    if detail.get("code") and isinstance(detail.get("params"), dict):       # check_finding: names inside
        return reason_text([{"code": detail["code"], "params": detail["params"]}], None)
    codes = detail.get("reason_codes") or []
    if not codes or not detail.get("callee"):
        return None
    return reason_text(codes, terminal_names(h, detail.get("caller") or h["court_terminal"], detail["callee"]))


def check_evidence(c: dict, tz: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    """One test / pre-connect check's measured figures (from the agents' report) and its reasons:
    `reason_text` in kk and ru from the report's reason codes (contract.reasons), with the
    terminals named by `names`; a report without codes keeps its English `reasons` only."""
    r = c.get("result") or {}
    codes = r.get("reason_codes") or []
    out, inn = r.get("outbound") or {}, r.get("inbound") or {}
    rtt = r.get("rtt_ms") or {}
    return {
        "kind": c["kind"], "caller": c["caller"], "callee": c["callee"], "status": c["status"],
        "verdict": c["verdict"], "attempts": c["attempts"], "finished_local": _local(c["finished_at"], tz),
        "connected": r.get("connected") if r else None, "error": c.get("error") or r.get("error"),
        "loss_out": _num(_percent(out.get("loss_ratio")), "{:.2f} %"),
        "loss_in": _num(_percent(inn.get("loss_ratio")), "{:.2f} %"),
        "jitter_out": _num(out.get("jitter_ms"), "{:.1f} ms"), "jitter_in": _num(inn.get("jitter_ms"), "{:.1f} ms"),
        "rtt_mean": _num(rtt.get("mean"), "{:.0f} ms"), "rtt_p95": _num(rtt.get("p95"), "{:.0f} ms"),
        "mos": _num(r.get("mos"), "{:.2f}"), "reasons": [str(x) for x in (r.get("reasons") or [])],
        "reason_text": reason_text(codes, names),
    }


def live_figures(rows: list[dict]) -> dict[str, Any]:
    """What the agents measured each second around a break (live_intervals rows of
    both terminals): worst loss and jitter received, mean RTT, stalled seconds and
    the verdicts of the seconds."""
    loss = [d["loss_ratio"] for r in rows for d in (r.get("inbound") or {},) if d.get("loss_ratio") is not None]
    jit = [d["jitter_ms"] for r in rows for d in (r.get("inbound") or {},) if d.get("jitter_ms") is not None]
    rtt = [r["rtt_ms"] for r in rows if r.get("rtt_ms") is not None]
    verdicts: dict[str, int] = {}
    for r in rows:
        v = "stalled" if r.get("stalled") else r.get("verdict") or "?"
        verdicts[v] = verdicts.get(v, 0) + 1
    return {"seconds": len(rows), "loss_max": _num(max(loss) * 100 if loss else None, "{:.1f} %"),
            "jitter_max": _num(max(jit) if jit else None, "{:.1f} ms"),
            "rtt_mean": _num(sum(rtt) / len(rtt) if rtt else None, "{:.0f} ms"),
            "verdicts": ", ".join(f"{k} {n}" for k, n in sorted(verdicts.items()))}


def _break_evidence(b: dict, tz: str, rows: list[dict], names: dict[str, str] | None = None) -> dict[str, Any]:
    """A break's evidence: the detector's figures and its reasons, in kk and ru from their codes
    (`names`: the terminals from the side that saw it), else as the detector wrote them."""
    ev = b.get("evidence") or {}
    keep = ("kind", "role", "stalled_s", "unusable", "window_s")
    parts = [f"{k}: {ev[k]}" for k in keep if ev.get(k) not in (None, "", [])]
    codes = ev.get("reason_codes") or []
    if ev.get("reasons") and not codes:
        parts.append("reasons: " + ", ".join(str(x) for x in ev["reasons"]))
    live = live_figures(rows)
    if live["seconds"]:
        parts.append(f"loss max {live['loss_max'] or '—'}, jitter max {live['jitter_max'] or '—'}, "
                     f"RTT {live['rtt_mean'] or '—'}; {live['verdicts']}")
    return {"cause": b["cause"], "started_local": _local(b["started_at"], tz),
            "ended_local": _local(b.get("ended_at"), tz), "duration_s": b.get("duration_s"),
            "attempts": b.get("attempts"), "outcome": b.get("outcome"), "live": live,
            "figures": "; ".join(parts)[:600],
            "reason_text": reason_text(codes, names)}


async def _breaks(conn: AsyncConnection, h: dict) -> list[dict]:
    """The breaks of the live monitoring (rule 22) with the figures measured in
    the detector's window before each (while the intervals are still kept)."""
    hearing_id, tz = h["id"], h["court"]["timezone"]
    remote = h["participants"][0]["terminal_id"] if h["participants"] else ""
    court = terminal_names(h, h["court_terminal"], remote)
    out = []
    for b in await live_repo.breaks_for(conn, hearing_id):
        window = dt.timedelta(seconds=float((b.get("evidence") or {}).get("window_s") or 10))
        rows = [r for r in await live_repo.recent_intervals(conn, hearing_id, b["started_at"] - window)
                if r["at"] <= b["started_at"]]
        seen_by = (b.get("evidence") or {}).get("role")     # a direction is as the side that saw it
        names = court if seen_by != "callee" else {"caller": court["callee"], "callee": court["caller"]}
        out.append(_break_evidence(b, tz, rows, names))
    return out


async def build_content(conn: AsyncConnection, hearing_id: int, *, trigger: str, now: dt.datetime,
                        note: str | None = None) -> dict[str, Any]:
    """The act's content (schema vks.act/1) as data, from the hearing's record as it stands `now`."""
    views = await hearings_repo.views(conn, [hearing_id], now)
    if not views:
        raise NotFound(f"no hearing {hearing_id}")
    h = views[0]
    tz = h["court"]["timezone"]
    start = dt.datetime.fromisoformat(h["start_utc"].replace("Z", "+00:00"))
    events = await events_repo.list_for(conn, hearing_id)
    timeline = []
    for e in events:
        # The catalog's sentences (the page's too); the detail as `key: value` only for an event whose
        # sentence lacks a word (a person's note is kept as written).
        text, worded, told = event_words.act_text(e["kind"], e["detail"], h, LANGS)
        timeline.append({"at_utc": iso(e["at"]), "at_local": _local(e["at"], tz), "kind": e["kind"], "text": text,
                         "detail": (e["detail"].get("note") or "") if worded else _summary(e["detail"], tz),
                         "reason_text": None if told else _event_reasons(e["detail"], h)})
    checks = [check_evidence(c, tz, terminal_names(h, c["caller"], c["callee"]))
              for c in await checks_repo.checks_for(conn, [hearing_id])
              if c["status"] in ("passed", "failed") or c["result"] is not None or c["error"]]
    escs = await esc_repo.list_escalations(conn, hearing_id=hearing_id)
    escalations = [{"id": e["id"], "cause": e["cause"],
                    "cause_text": list(CAUSE_TEXT.get(e["cause"], (e["cause"],) * 2)),
                    "state": e["state"], "step": e["step"], "opened_local": _local(e["opened_at"], tz),
                    "step2_local": _local(e["step2_at"], tz), "acked_by": e["acked_by"],
                    "acked_local": _local(e["acked_at"], tz), "cannot_fix_by": e["cannot_fix_by"],
                    "cannot_fix_local": _local(e["cannot_fix_at"], tz), "resolved_by": e["resolved_by"],
                    "resolved_local": _local(e["resolved_at"], tz)} for e in sorted(escs, key=lambda e: e["id"])]
    return {
        "schema": SCHEMA, "trigger": trigger, "note": note,
        "drafted_utc": iso(now), "drafted_local": _local(now, tz),
        "hearing": {
            "id": h["id"], "case_number": h["case_number"], "court": h["court"]["name"], "court_id": h["court"]["id"],
            "room": h["room"]["name"], "timezone": tz, "start_utc": h["start_utc"],
            "date_local": start.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y"),
            "time_local": start.astimezone(ZoneInfo(tz)).strftime("%H:%M"),
            "utc_offset": _offset(start, tz),
            "participants": [{"institution": p["institution_name"], "terminal_id": p["terminal_id"]}
                             for p in h["participants"]],
            "court_terminal": h["court_terminal"], "status": h["status"],
        },
        "timeline": timeline,
        "checks": checks,
        "escalations": escalations,
        "breaks": await _breaks(conn, h),
        "modes": await act_modes.section(conn, h, _local, tz),       # rules 21, 23
        "self_checks": await selfcheck_evidence.rows(conn, hearing_id, tz, now),
    }


def act_view(act: dict, sigs: list[dict]) -> dict[str, Any]:
    """The act as the API shows it and the documents render it: the stored act with its signatures."""
    tz = act["content"]["hearing"]["timezone"]
    legacy = act["final_sha256"] is not None and act["final_sha256"] == sha256(_sealed(act, sigs, legacy=True))
    return {
        "hearing_id": act["hearing_id"], "status": act["status"], "trigger": act["trigger"],
        "content_sha256": act["content_sha256"], "final_sha256": act["final_sha256"],
        "documents": act["documents"], "created_at": iso(act["created_at"]), "created_by": act["created_by"],
        "updated_at": iso(act["updated_at"]), "finalized_at": iso(act["finalized_at"]),
        "signatures": [{"role": s["role"], "name": s["name"], "user_name": s.get("user_name"),
                        "recorded_by": s["recorded_by"], "entered_by": _entered_by(s, legacy),
                        "signed_at": iso(s["signed_at"]), "signed_local": _local(s["signed_at"], tz)} for s in sigs],
        "missing_signatures": [r for r in SIGNER_ROLES if r not in {s["role"] for s in sigs}],
        "content": act["content"],
    }


def _entered_by(sig: dict, legacy: bool) -> str | None:
    """Who entered a signature given with no account, as the documents print it. An act sealed before
    signatures knew their accounts (migration 0007) prints none: its documents keep their bytes."""
    return None if legacy or sig.get("user_name") else sig["recorded_by"]


# --- who signs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    """Who gives a signature: in `role`, under `name` as printed; `user_name` is the signing account
    (None: a signer with no account, entered by `recorded_by`)."""
    role: str
    name: str
    user_name: str | None
    recorded_by: str

    def row(self) -> dict[str, Any]:
        """The signature's columns but its time."""
        return {"role": self.role, "name": self.name, "user_name": self.user_name, "recorded_by": self.recorded_by}


# Who may enter a signer with no account: whoever may change hearings (secretary, head_of_office, admin).
ENTERS_NO_ACCOUNT = auth.HEARINGS_WRITE


def signer(user: dict, *, role: str | None, name: str | None, no_account: bool) -> Signer:
    """The signer `user` records (403 / 400 when they may not). Without `no_account` the user signs
    themselves: in their account's role (a signer role; `role`, if given, must be it), under their
    account's name. With it, they enter someone with no account under `name`, in `role`."""
    if no_account:
        if not auth.allowed(user["role"], ENTERS_NO_ACCOUNT):
            who = " or ".join(r for r, p in auth.ROLE_PERMISSIONS.items() if ENTERS_NO_ACCOUNT in p)
            raise Forbidden(f"a signer with no account is entered by a {who}, not by {_a(user['role'])}")
        if role is None:
            raise Invalid("role: which of the signatures the signer with no account gives", field="role")
        if role not in SIGNER_ROLES:
            raise Invalid(f"role: expected one of {', '.join(SIGNER_ROLES)}", field="role")
        if role == user["role"]:
            raise Forbidden(f"{_a(role)} account signs the {role} signature itself, from its own account; it "
                            f"does not enter someone else's {role} signature", code="own_role", field="role")
        if not (name or "").strip():
            raise Invalid("name: the name of the signer with no account, as printed", field="name")
        return Signer(role, " ".join((name or "").split()), None, user["name"])
    if user["role"] not in SIGNER_ROLES:
        raise Forbidden(f"the act is signed by the {', the '.join(SIGNER_ROLES)} (rule 18), each from their own "
                        f"account; {_a(user['role'])} account gives none of the signatures (a signer with no "
                        "account is entered with no_account: true, role and name)")
    if role is not None and role != user["role"]:
        raise Forbidden(f"{_a(user['role'])} account signs as {user['role']}, not as {role}: the {role} signs from "
                        f"their own account (or, having none, is entered with no_account: true)")
    if name is not None:
        raise Invalid("name: an account signs under its own name; a name is given only with no_account: true",
                      field="name")
    return Signer(user["role"], user["name"], user["name"], user["name"])


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


# --- the service ---------------------------------------------------------------------------------

class ActService:
    """Drafts, signs and finalises the acts (the API and the escalation call it)."""

    async def _store_draft(self, conn: AsyncConnection, hearing_id: int, *, trigger: str, by: str,
                           now: dt.datetime, note: str | None) -> dict:
        content = await build_content(conn, hearing_id, trigger=trigger, now=now, note=note)
        digest = sha256(content)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is None:
            await repo.insert_act(conn, {"hearing_id": hearing_id, "status": "draft", "trigger": trigger,
                                         "content": content, "content_sha256": digest, "created_at": now,
                                         "created_by": by, "updated_at": now})
        else:
            await repo.update_act(conn, act["id"], trigger=trigger, content=content, content_sha256=digest,
                                  updated_at=now)
        await events_repo.append(conn, hearing_id, "act_drafted", now, {
            "by": by, "trigger": trigger, "content_sha256": digest, "redrafted": act is not None})
        return await _stored(conn, hearing_id)

    async def draft(self, conn: AsyncConnection, hearing_id: int, user: dict, note: str | None,
                    now: dt.datetime) -> dict:
        """The secretary asks for the act (again: the draft is refreshed while unsigned)."""
        await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is not None:
            if act["status"] == "final":
                raise Conflict(f"the act of hearing {hearing_id} is final (signed {iso(act['finalized_at'])})",
                               code="act_final")
            if await repo.signatures(conn, act["id"]):
                raise Conflict("the draft has signatures; it cannot be redrafted", code="act_signed")
        trigger = act["trigger"] if act is not None and act["trigger"] != "requested" else "requested"
        act = await self._store_draft(conn, hearing_id, trigger=trigger, by=user["name"], now=now, note=note)
        return act_view(act, [])

    async def draft_auto(self, conn: AsyncConnection, hearing_id: int, *, trigger: str, now: dt.datetime) -> bool:
        """Drafted by the escalation (caller holds the hearing lock). An act
        already signed or final is left as it is. Returns whether it drafted."""
        act = await repo.get_for_hearing(conn, hearing_id, for_update=True)
        if act is not None and (act["status"] == "final" or await repo.signatures(conn, act["id"])):
            return False
        await self._store_draft(conn, hearing_id, trigger=trigger, by="system", now=now,
                                note=act["content"].get("note") if act else None)
        return True

    async def get(self, conn: AsyncConnection, hearing_id: int) -> dict:
        await hearings_repo.get_hearing(conn, hearing_id)
        act = await repo.get_for_hearing(conn, hearing_id)
        if act is None:
            raise NotFound(f"hearing {hearing_id} has no act of technical impossibility", code="no_act")
        return act_view(act, await repo.signatures(conn, act["id"]))

    async def sign(self, db: Database, hearing_id: int, who: Signer, now: dt.datetime, *,
                   recorded: Callable[[AsyncConnection], Awaitable[None]] | None = None) -> dict:
        """Record the signature `who` gives (see `signer`). The one that completes the three makes the act
        final: its documents are rendered with no transaction open (reportlab takes a while; a transaction
        would hold the SQLite write lock, or a PostgreSQL connection and its row locks, for all of it), then
        the signature and the seal are stored together in one short transaction that first checks the act
        is as it was read. `recorded(conn)` is awaited in that transaction (the API's declared audit row)."""
        role = who.role
        new = {**who.row(), "signed_at": now}
        for _ in range(SIGN_ATTEMPTS):
            async with db.read() as conn:
                seen = await self._signable(conn, hearing_id, who)
            final = None
            if _completes(seen[1], role):
                final = await asyncio.to_thread(seal, seen[0], [*seen[1], new], now)
            async with db.transaction() as conn:
                await hearings_repo.get_hearing(conn, hearing_id, for_update=True)
                act, sigs = await self._signable(conn, hearing_id, who, for_update=True)
                if _completes(sigs, role) and (final is None or _changed(seen, (act, sigs))):
                    continue            # signed or redrafted meanwhile: read and render again
                await repo.add_signature(conn, act["id"], **who.row(), at=now)
                await events_repo.append(conn, hearing_id, "act_signed", now, {
                    **who.row(), "no_account": who.user_name is None})
                if recorded is not None:
                    await recorded(conn)        # the route's audit row, in this transaction
                if final is not None:
                    await repo.update_act(conn, act["id"], status="final", final_sha256=final.sha256,
                                          finalized_at=now, documents=final.documents, updated_at=now)
                    await events_repo.append(conn, hearing_id, "act_final", now, {
                        "final_sha256": final.sha256, "documents": final.documents})
                return act_view(await _stored(conn, hearing_id), await repo.signatures(conn, act["id"]))
        raise Conflict(f"the act of hearing {hearing_id} kept changing while it was being signed; try again",
                       code="act_changed")

    async def _signable(self, conn: AsyncConnection, hearing_id: int, who: Signer, *,
                        for_update: bool = False) -> tuple[dict, list[dict]]:
        """The act of the hearing and its signatures, when `who` may still sign it (else 404 / 409)."""
        if not for_update:
            await hearings_repo.get_hearing(conn, hearing_id)
        act = await repo.get_for_hearing(conn, hearing_id, for_update=for_update)
        if act is None:
            raise NotFound(f"hearing {hearing_id} has no act of technical impossibility", code="no_act")
        if act["status"] == "final":
            raise Conflict(f"the act of hearing {hearing_id} is final", code="act_final")
        sigs = await repo.signatures(conn, act["id"])
        if any(s["role"] == who.role for s in sigs):
            raise Conflict(f"the {who.role} has signed already", code="signed")
        mine = next((s for s in sigs if who.user_name is not None and s["user_name"] == who.user_name), None)
        if mine is not None:
            raise Conflict(f"{who.user_name} has given the {mine['role']} signature of this act; one account gives "
                           "at most one of the three", code="signed_by_account")
        # one account entering every signer would be one account giving them all
        if who.user_name is None and any(s["user_name"] is None for s in sigs):
            raise Conflict(NO_ACCOUNT_ONCE, code="one_no_account")
        if who.user_name is None:
            account = await repo.account_named(conn, who.name)
            if account is not None:
                raise Conflict(f"{who.name} is the name of the account {account}: that person signs from their "
                               "account, nobody enters the signature for them", code="signer_has_account",
                               field="name")
        if any(repo.fold_name(s["name"]) == repo.fold_name(who.name) for s in sigs):
            raise Conflict(f"{who.name} has signed this act already; one person gives one of the three signatures",
                           code="name_signed", field="name")
        return act, sigs


SIGN_ATTEMPTS = 3
NO_ACCOUNT_ONCE = "at most one signer without an account; the others sign from their own accounts"


async def _stored(conn: AsyncConnection, hearing_id: int) -> dict:
    act = await repo.get_for_hearing(conn, hearing_id)
    if act is None:
        raise NotFound(f"hearing {hearing_id} has no act of technical impossibility", code="no_act")
    return act


@dataclass(frozen=True)
class Final:
    """The seal of a final act: `final_sha256` and the sha256 of each of its documents."""
    sha256: str
    documents: dict[str, dict[str, str]]


def seal(act: dict, sigs: list[dict], now: dt.datetime) -> Final:
    """Seal the act with these (all three) signatures and render its final documents (blocking: call
    from a thread, with no transaction open)."""
    final_sha = sha256(_sealed(act, sigs))
    view = act_view({**act, "status": "final", "final_sha256": final_sha, "finalized_at": now,
                     "updated_at": now}, sigs)
    docs = {lg: {"html_sha256": hashlib.sha256(render_html(view, lg).encode("utf-8")).hexdigest(),
                 "pdf_sha256": hashlib.sha256(render_pdf(view, lg)).hexdigest()} for lg in LANGS}
    return Final(final_sha, docs)


def _sealed(act: dict, sigs: list[dict], *, legacy: bool = False) -> dict[str, Any]:
    """What `final_sha256` seals: the content and the signatures, each with its account and who entered
    it (`legacy`: as acts were sealed before migration 0007, without them)."""
    keys = ("role", "name") if legacy else ("role", "name", "user_name", "recorded_by")
    return {"content_sha256": act["content_sha256"],
            "signatures": [{**{k: s.get(k) for k in keys}, "signed_at": iso(s["signed_at"])} for s in sigs]}


def _completes(sigs: list[dict], role: str) -> bool:
    return {s["role"] for s in sigs} | {role} >= set(SIGNER_ROLES)


def _changed(before: tuple[dict, list[dict]], after: tuple[dict, list[dict]]) -> bool:
    """Whether the act (its content, its signatures) differs from what was read."""
    def key(act: dict, sigs: list[dict]) -> tuple:
        return (act["id"], act["status"], act["content_sha256"], act["updated_at"], [s["id"] for s in sigs])
    return key(*before) != key(*after)
