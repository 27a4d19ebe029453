"""The act of technical impossibility (rule 18) through the API, on SQLite and
PostgreSQL: drafted with the measured evidence, printable HTML and PDF in
Kazakh and Russian (either first), three signatures by the right people - each
from their own account in its role, or (at most one of them) entered for someone
with no account with who entered it -, and final means immutable and reproducible."""
from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import hashlib
import io
import sqlite3
import subprocess
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy.engine import make_url

from controller import acts
from controller.api.escalations import ActOut
from controller.store import users
from controller.store.schema import users as users_table
from tests.controller_kit import Controller, counting, report
from tests.harness import have

H = dt.timedelta(hours=1)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
KAZAKH = "әғқңөұүһі"
KK_TITLE = "Бейнеконференцбайланыс құралдарын қолданудың техникалық мүмкіндігінің болмағаны туралы АКТ"
RU_TITLE = "АКТ об отсутствии технической возможности использования средств видеоконференцсвязи"


async def hearing_with_failed_test(c: Controller) -> int:
    _, h = await c.schedule(start=c.clock() + 2 * H, case="1-55/2026")
    await c.scheduler.run_until_idle()
    c.clock.advance(minutes=1)
    await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("unusable", loss=0.12))
    return h["id"]


async def add_user(c: Controller, name: str, role: str) -> str:
    """A user beyond the kit's five (e.g. a head_of_office); their API token."""
    async with c.db.transaction() as conn:
        u = await users.create_user(conn, name, role, c.clock())
        return await users.issue_token(conn, u["id"], c.clock())


def pdf_text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


async def test_act_drafted_rendered_signed_and_final(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        hid = await hearing_with_failed_test(c)
        await c.call("GET", f"/api/v1/hearings/{hid}/act", expect=404)
        await c.call("POST", f"/api/v1/hearings/{hid}/act", role="technician", json={}, expect=403)
        await c.call("POST", f"/api/v1/hearings/{hid}/act", role="viewer", json={}, expect=403)
        await c.call("POST", "/api/v1/hearings/999/act", role="secretary", json={}, expect=404)
        c.clock.advance(minutes=5)
        _, act = await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary",
                              json={"note": "Связь с СИЗО отсутствует <b>с 10:05</b>"}, expect=201)
        ActOut.model_validate(act)
        assert (act["status"], act["trigger"], act["created_by"]) == ("draft", "requested", "secretary-1")
        assert act["missing_signatures"] == ["head_of_office", "secretary", "technician"]
        h = act["content"]["hearing"]
        assert (h["case_number"], h["court"], h["room"]) == ("1-55/2026", "Медеуский районный суд г. Алматы", "Зал 1")
        assert (h["date_local"], h["time_local"], h["utc_offset"]) == ("01.12.2026", "11:00", "+05:00")
        [ev] = act["content"]["checks"]
        assert (ev["kind"], ev["verdict"], ev["loss_in"], ev["jitter_out"], ev["rtt_mean"]) == \
            ("test", "unusable", "12.00 %", "2.0 ms", "20 ms")
        kinds = [e["kind"] for e in act["content"]["timeline"]]
        assert kinds[0] == "hearing_scheduled" and "check_result" in kinds and "escalation_opened" in kinds
        assert act["content_sha256"] == acts.sha256(act["content"])

        # HTML in both languages, the chosen one first, escaped
        for lang, first, second in (("kk", KK_TITLE, RU_TITLE), ("ru", RU_TITLE, KK_TITLE)):
            status, html = await c.call("GET", f"/api/v1/hearings/{hid}/act.html?lang={lang}", role="viewer")
            assert status == 200
            assert html.index(first) < html.index(second)
            assert "&lt;b&gt;с 10:05&lt;/b&gt;" in html and "<b>с 10:05</b>" not in html
            for text in ("1-55/2026", "01.12.2026 11:00", "12.00 %", "Кеңсе меңгерушісі", "Заведующий канцелярией",
                         "Техникалық маман", "Секретарь судебного заседания", act["content_sha256"]):
                assert text in html, text
        status, err = await c.call("GET", f"/api/v1/hearings/{hid}/act.html?lang=en")
        assert status == 400 and err["field"] == "lang"

        # PDF: valid, both languages, the Kazakh letters intact
        resp = await c.client.get(f"/api/v1/hearings/{hid}/act.pdf?lang=kk",
                                  headers={"Authorization": f"Bearer {c.tokens['viewer']}"})
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/pdf"
        pdf = await resp.read()
        assert pdf.startswith(b"%PDF-")
        text = pdf_text(pdf)
        for needle in ("туралы АКТ", "об отсутствии технической возможности", "1-55/2026", "Кеңсе меңгерушісі",
                       "Заведующий канцелярией", "12.00 %"):
            assert needle in text.replace("\n", " "), needle
        assert set("құрал" + "мүмкіндігінің" + "өткізу"[0] + "ә") <= set(text)
        assert text.index("туралы АКТ") < text.index("об отсутствии")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "act-kk.pdf").write_bytes(pdf)
        if have("pdftoppm"):
            subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
                            str(ARTIFACTS / "act-kk.pdf"), str(ARTIFACTS / "act-kk-page1")], check=True)
        if have("pdftotext"):
            out = subprocess.run(["pdftotext", "-layout", str(ARTIFACTS / "act-kk.pdf"), "-"], capture_output=True,
                                 text=True, check=True).stdout
            assert "Бейнеконференцбайланыс" in out and "видеоконференцсвязи" in out

        # signatures: each from the signer's own account, in its role; someone with no account entered
        sig = f"/api/v1/hearings/{hid}/act/signatures"
        head = await add_user(c, "head-1", "head_of_office")
        status, err = await c.call("POST", sig, role="secretary", json={"role": "head_of_office", "name": "X"})
        assert status == 403 and err["error"] == "forbidden"
        await c.call("POST", sig, role="viewer", json={}, expect=403)
        await c.call("POST", sig, role="coordinator", json={"role": "secretary"}, expect=403)
        await c.call("POST", sig, role="technician", json={"role": "technician", "name": "X", "no_account": True},
                     expect=403)
        status, err = await c.call("POST", sig, role="secretary", json={"role": "judge"})
        assert status == 400 and err["field"] == "role"
        c.clock.advance(minutes=1)
        _, act = await c.call("POST", sig, token=head, json={"role": "head_of_office"}, expect=201)
        await c.call("POST", sig, role="secretary", json={"role": "head_of_office", "name": "Y", "no_account": True},
                     expect=409)
        # a signed draft is not redrafted
        status, err = await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={})
        assert status == 409 and err["error"] == "act_signed"
        _, act = await c.call("POST", sig, role="secretary", json={}, expect=201)
        assert act["status"] == "draft" and act["missing_signatures"] == ["technician"]
        _, act = await c.call("POST", sig, role="secretary",
                              json={"role": "technician", "name": "Нұрланов Б.", "no_account": True}, expect=201)
        ActOut.model_validate(act)
        assert act["status"] == "final" and act["finalized_at"] and act["missing_signatures"] == []
        assert [(s["role"], s["name"], s["user_name"], s["recorded_by"]) for s in act["signatures"]] == [
            ("head_of_office", "head-1", "head-1", "head-1"),
            ("secretary", "secretary-1", "secretary-1", "secretary-1"),
            ("technician", "Нұрланов Б.", None, "secretary-1")]
        assert act["final_sha256"] and act["final_sha256"] != act["content_sha256"]

        # final: immutable (409 on any change), its documents reproducible
        for role, path, body in (("secretary", f"/api/v1/hearings/{hid}/act", {}),
                                 ("admin", sig, {"role": "technician", "name": "Z", "no_account": True}),
                                 ("technician", sig, {})):
            status, err = await c.call("POST", path, role=role, json=body)
            assert status == 409 and err["error"] == "act_final"
        # a new fault does not touch a final act
        await c.call("POST", f"/api/v1/hearings/{hid}/checks", role="technician", json={"kind": "test"}, expect=202)
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("unusable"))
        _, esc = await c.call("GET", f"/api/v1/escalations?hearing_id={hid}", expect=200)
        await c.call("POST", f"/api/v1/escalations/{esc['items'][0]['id']}/cannot-fix", role="technician", json={},
                     expect=200)
        _, again = await c.call("GET", f"/api/v1/hearings/{hid}/act", expect=200)
        assert again["content"] == act["content"] and again["final_sha256"] == act["final_sha256"]
        for lang in ("kk", "ru"):
            resp = await c.client.get(f"/api/v1/hearings/{hid}/act.pdf?lang={lang}",
                                      headers={"Authorization": f"Bearer {c.tokens['viewer']}"})
            pdf = await resp.read()
            assert hashlib.sha256(pdf).hexdigest() == act["documents"][lang]["pdf_sha256"]
            _, html = await c.call("GET", f"/api/v1/hearings/{hid}/act.html?lang={lang}")
            assert hashlib.sha256(html.encode()).hexdigest() == act["documents"][lang]["html_sha256"]
            assert "head-1" in html and act["final_sha256"] in html
            assert "Нұрланов Б.<br><small>(есептік жазбасы жоқ, енгізген secretary-1)" in html
            assert "(без учётной записи, внесено пользователем secretary-1)" in html
        text = " ".join(pdf_text(pdf).split())
        assert "Нұрланов Б. (есептік жазбасы жоқ, енгізген secretary-1)" in text
        assert "(без учётной записи, внесено пользователем secretary-1)" in text
        events = [e["kind"] for e in await c.events(hid)]
        assert events.count("act_signed") == 3 and events.count("act_final") == 1
        _, audit = await c.call("GET", f"/api/v1/audit?target=hearing:{hid}", expect=200)
        assert sorted(a["action"] for a in audit["items"] if a["action"].startswith("act.")) == \
            ["act.draft", "act.sign", "act.sign", "act.sign"]
        assert [(a["who"], a["detail"]) for a in reversed(audit["items"]) if a["action"] == "act.sign"] == [
            ("head-1", {"role": "head_of_office", "name": "head-1", "no_account": False}),
            ("secretary-1", {"role": "secretary", "name": "secretary-1", "no_account": False}),
            ("secretary-1", {"role": "technician", "name": "Нұрланов Б.", "no_account": True})]


async def test_redraft_while_unsigned_refreshes_the_evidence(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        hid = await hearing_with_failed_test(c)
        _, first = await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={}, expect=201)
        c.clock.advance(minutes=10)
        await c.call("POST", f"/api/v1/hearings/{hid}/checks", role="technician", json={"kind": "test"}, expect=202)
        await c.scheduler.run_until_idle()
        await c.checks.on_session_result(c.gw.started[-1]["session_id"], report("unusable", loss=0.3))
        _, second = await c.call("POST", f"/api/v1/hearings/{hid}/act", role="admin", json={}, expect=201)
        assert second["content_sha256"] != first["content_sha256"]
        assert second["content"]["checks"][0]["loss_in"] == "30.00 %"
        assert second["created_by"] == "secretary-1"


def sample_content() -> dict:
    return {
        "schema": "vks.act/1", "trigger": "cannot_fix", "note": KAZAKH + " " + KAZAKH.upper(),
        "drafted_utc": "2026-12-01T05:00:00Z",
        "drafted_local": "01.12.2026 10:00:00",
        "hearing": {"id": 1, "case_number": "2-1/2026", "court": "Сот", "court_id": "c", "room": "Зал 1",
                    "timezone": "Asia/Almaty", "start_utc": "2026-12-01T05:30:00Z", "date_local": "01.12.2026",
                    "time_local": "10:30", "utc_offset": "+05:00", "participants": [], "court_terminal": "t",
                    "status": "scheduled"},
        "timeline": [], "checks": [], "escalations": [], "breaks": [
            {"cause": "stall", "started_local": "01.12.2026 10:31:00", "ended_local": None, "duration_s": 42.0,
             "attempts": 3, "outcome": "escalated", "figures": "loss: 1.0"}],
    }


def test_render_is_pure_and_reproducible():
    content = sample_content()
    view = {"status": "draft", "content": content, "content_sha256": acts.sha256(content), "final_sha256": None,
            "signatures": []}
    a, b = acts.render_pdf(view, "ru"), acts.render_pdf(view, "ru")
    assert a == b
    text = pdf_text(a)
    assert "ПРОЕКТ" in text and "ЖОБА" in text and "Технические перерывы" in text
    # every Kazakh letter, both cases, survives into the PDF's text and the HTML
    assert KAZAKH + " " + KAZAKH.upper() in text
    assert KAZAKH + " " + KAZAKH.upper() in acts.render_html(view, "kk")


async def test_act_carries_the_break_and_its_live_figures(db_url, fake_clock):
    """A break of the live monitoring (rule 22) whose reconnect failed: the act
    shows the break and what the agents measured in the seconds before it."""
    from controller import escalation
    from controller.store import live as live_repo
    async with Controller(db_url, fake_clock) as c:
        _, h = await c.schedule(start=c.clock() + 2 * H, case="1-56/2026")
        hid = h["id"]
        c.clock.advance(2 * H + dt.timedelta(minutes=10))          # the hearing is in progress
        t0 = c.clock()
        async with c.db.transaction() as conn:
            rows = []
            for i in range(10):
                bad = i >= 4
                for term in ("court-almaty-1", "sizo-almaty-1"):
                    rows.append({"hearing_id": hid, "session_id": "mon-1", "terminal_id": term, "t": i,
                                 "at": t0 - dt.timedelta(seconds=10 - i),
                                 "inbound": {"loss_ratio": 0.25 if bad else 0.0, "jitter_ms": 80.0 if bad else 3.0},
                                 "outbound": None, "rtt_ms": 300.0 if bad else 40.0, "stalled": i >= 8,
                                 "verdict": "unusable" if bad else "good"})
            await live_repo.insert_intervals(conn, rows)
            bid = await live_repo.insert_break(conn, {
                "hearing_id": hid, "cause": "unusable", "started_at": t0,
                "evidence": {"kind": "quality", "role": "callee", "unusable": 6, "window_s": 10,
                             "reasons": ["loss", "jitter"], "seconds": ["unusable"] * 6}})
        c.clock.advance(minutes=3)
        eid = await c.app[escalation.ESCALATIONS_KEY].open(hearing_id=hid, cause="reconnect_failed",
                                    detail={"break_id": bid, "attempts": 6})
        await c.call("POST", f"/api/v1/escalations/{eid}/cannot-fix", role="technician", json={}, expect=200)
        _, act = await c.call("GET", f"/api/v1/hearings/{hid}/act", expect=200)
        [b] = act["content"]["breaks"]
        assert b["cause"] == "unusable" and b["live"]["seconds"] == 20
        assert (b["live"]["loss_max"], b["live"]["jitter_max"]) == ("25.0 %", "80.0 ms")
        assert b["live"]["verdicts"] == "good 8, stalled 4, unusable 8"
        assert "reasons: loss, jitter" in b["figures"]
        assert act["content"]["escalations"][0]["cause_text"][1] == "переподключение не удалось"
        resp = await c.client.get(f"/api/v1/hearings/{hid}/act.pdf?lang=ru",
                                  headers={"Authorization": f"Bearer {c.tokens['viewer']}"})
        text = pdf_text(await resp.read()).replace("\n", " ")
        assert "Технические перерывы" in text and "25.0 %" in text and "Техникалық үзілістер" in text


def _sqlite_write_lock_free(db_url: str) -> bool | None:
    """On SQLite: can another connection take the write lock right now (no waiting)? None elsewhere."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    conn = sqlite3.connect(url.database, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


async def test_final_act_renders_with_no_transaction_open(db_url, fake_clock, monkeypatch):
    """The last signature makes the act final: its PDFs render (reportlab, slow) with no transaction of the
    signing request open - nobody else's write waits for the render -, and the signature and the seal are
    stored only if the act did not change meanwhile: a rival signature stored during the render wins, the
    slower one is refused (409), and the final act's documents are those of its actual signatures."""
    depth: contextvars.ContextVar[int] = contextvars.ContextVar("open_transactions", default=0)
    async with Controller(db_url, fake_clock, live={"enabled": False}) as c:
        hid = await hearing_with_failed_test(c)
        await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={}, expect=201)
        sig = f"/api/v1/hearings/{hid}/act/signatures"
        await c.call("POST", sig, role="secretary", json={"role": "head_of_office", "name": "Head", "no_account": True},
                     expect=201)
        await c.call("POST", sig, role="secretary", json={}, expect=201)
        for name in ("transaction", "read"):
            monkeypatch.setattr(c.db, name, counting(getattr(c.db, name), depth))
        loop, render, seen, rival = asyncio.get_running_loop(), acts.render_pdf, [], []
        other = await add_user(c, "technician-2", "technician")

        def spy(view, lang):
            seen.append((view["signatures"][-1]["name"], lang, depth.get(), _sqlite_write_lock_free(db_url)))
            if len(seen) == 1:     # the first render: another technician signs meanwhile, and finishes first
                rival.append(asyncio.run_coroutine_threadsafe(c.call("POST", sig, token=other, json={}),
                                                              loop).result(60))
            return render(view, lang)

        monkeypatch.setattr(acts, "render_pdf", spy)
        status, err = await c.call("POST", sig, role="technician", json={})
        assert (status, err["error"]) == (409, "act_final")
        status, final = rival[0]
        assert status == 201 and final["status"] == "final"
        lock_free = None if c.db.is_postgres else True
        slow = "technician-1"
        assert seen == [(slow, "kk", 0, lock_free), ("technician-2", "kk", 0, lock_free),
                        ("technician-2", "ru", 0, lock_free), (slow, "ru", 0, lock_free)]
        assert [(s["role"], s["name"]) for s in final["signatures"]][-1] == ("technician", "technician-2")
        monkeypatch.undo()
        resp = await c.client.get(f"{sig.rsplit('/', 1)[0]}.pdf?lang=ru",
                                  headers={"Authorization": f"Bearer {c.tokens['viewer']}"})
        assert hashlib.sha256(await resp.read()).hexdigest() == final["documents"]["ru"]["pdf_sha256"]
        events = [e["kind"] for e in await c.events(hid)]
        assert events.count("act_signed") == 3 and events.count("act_final") == 1


async def test_signatures_come_from_the_signers_accounts(db_url, fake_clock):
    """Issue 11: a secretary signed an act as "head of office" under a made-up name. Each signer now
    signs from their own account, in its role; someone with no account is entered by a user who may
    change hearings, under a name that is no account's, and the act records who entered it; one
    account gives at most one of the three signatures, one name appears once."""
    async with Controller(db_url, fake_clock) as c:
        hid = await hearing_with_failed_test(c)
        await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={}, expect=201)
        sig = f"/api/v1/hearings/{hid}/act/signatures"
        head = await add_user(c, "Head-1", "head_of_office")
        # the finding: a secretary signing as head of office, as themselves or under a made-up name
        for body in ({"role": "head_of_office"}, {"role": "head_of_office", "name": "Made Up"}):
            status, err = await c.call("POST", sig, role="secretary", json=body)
            assert (status, err["error"]) == (403, "forbidden"), err
            assert "a secretary account signs as secretary, not as head_of_office" in err["message"]
        # an account whose role is none of the three signs nothing
        for role in ("admin", "coordinator", "viewer"):
            status, err = await c.call("POST", sig, role=role, json={})
            assert status == 403 and f" {role} account gives none of the signatures" in err["message"], err
        # a name comes only with a signer with no account
        status, err = await c.call("POST", sig, role="secretary", json={"name": "Иванова А. А."})
        assert (status, err["field"]) == (400, "name")

        # the head of the court office signs from their account
        _, act = await c.call("POST", sig, token=head, json={}, expect=201)
        assert [(s["role"], s["name"], s["user_name"], s["recorded_by"], s["entered_by"])
                for s in act["signatures"]] == [("head_of_office", "Head-1", "Head-1", "Head-1", None)]

        # a signer with no account: entered by who may change hearings, under no account's name
        no_account = {"role": "technician", "no_account": True}
        await c.call("POST", sig, role="technician", json={**no_account, "name": "Нұрланов Б."}, expect=403)
        # an account's name, however it is spelt: case, spaces, NFKC (full-width), hyphen-like characters
        # (U+2010-U+2015, U+2212) and zero-width characters
        for name in ("technician-1", " TECHNICIAN-1 ", "head-1", "head_of_office\u20111", "ｔｅｃｈｎｉｃｉａｎ-1",
                     "technician\u22121", "Technician\u2015\u200b1", "head_of_office\u2010\u00ad1"):
            status, err = await c.call("POST", sig, role="admin", json={**no_account, "name": name})
            assert (status, err["error"], err["field"]) == (409, "signer_has_account", "name"), (name, err)
        status, err = await c.call("POST", sig, role="admin", json={**no_account, "name": "head_of_office\u20111"})
        assert "account head_of_office-1" in err["message"]
        status, err = await c.call("POST", sig, role="admin", json=no_account)
        assert (status, err["field"]) == (400, "name")
        status, err = await c.call("POST", sig, role="admin", json={"name": "X", "no_account": True})
        assert (status, err["field"]) == (400, "role")
        _, act = await c.call("POST", sig, role="admin", json={**no_account, "name": " Нұрланов \r\n Б. "},
                              expect=201)
        assert [(s["role"], s["name"], s["user_name"], s["recorded_by"], s["entered_by"])
                for s in act["signatures"]][-1] == ("technician", "Нұрланов Б.", None, "admin-1", "admin-1")
        # one signer with no account per act; an account never enters its own role (it signs it itself)
        status, err = await c.call("POST", sig, role="admin",
                                   json={"role": "secretary", "name": "Иванова А. А.", "no_account": True})
        assert (status, err["error"]) == (409, "one_no_account")
        assert err["message"] == "at most one signer without an account; the others sign from their own accounts"
        status, err = await c.call("POST", sig, role="secretary",
                                   json={"role": "secretary", "name": "Иванова А. А.", "no_account": True})
        assert (status, err["error"], err["field"]) == (403, "own_role", "role"), err
        # one name appears once on the act: an account made later under that name does not sign it again
        late = await add_user(c, "НҰРЛАНОВ  Б.", "secretary")
        status, err = await c.call("POST", sig, token=late, json={})
        assert (status, err["error"]) == (409, "name_signed")

        # one account gives at most one signature: the head of office, now a secretary, signs again
        async with c.db.transaction() as conn:
            await conn.execute(users_table.update().where(users_table.c.name == "Head-1").values(role="secretary"))
        status, err = await c.call("POST", sig, token=head, json={})
        assert (status, err["error"]) == (409, "signed_by_account") and "head_of_office signature" in err["message"]

        _, act = await c.call("POST", sig, role="secretary", json={"role": "secretary"}, expect=201)
        assert act["status"] == "final"
        _, again = await c.call("GET", f"/api/v1/hearings/{hid}/act", role="viewer", expect=200)
        assert again["signatures"] == act["signatures"]
        ActOut.model_validate(again)
        _, html = await c.call("GET", f"/api/v1/hearings/{hid}/act.html?lang=ru")
        assert hashlib.sha256(html.encode()).hexdigest() == act["documents"]["ru"]["html_sha256"]
        assert "Нұрланов Б.<br><small>(без учётной записи, внесено пользователем admin-1)</small>" in html
        assert "Head-1</td>" in html and "secretary-1</td>" in html
        signed = [e["detail"] for e in await c.events(hid) if e["kind"] == "act_signed"]
        assert [(d["role"], d["user_name"], d["recorded_by"], d["no_account"]) for d in signed] == [
            ("head_of_office", "Head-1", "Head-1", False), ("technician", None, "admin-1", True),
            ("secretary", "secretary-1", "secretary-1", False)]


async def test_one_account_cannot_make_an_act_final_through_signers_with_no_account(db_url, fake_clock):
    """The review of issue 11 item 6: one account entered three signers with no account (all 201, act
    final) - the original finding relabelled "entered by". An act holds at most one signature with no
    account, never in the entering account's own role, so a final act carries at least two signatures
    given by two distinct accounts from their own accounts."""
    async with Controller(db_url, fake_clock) as c:
        hid = await hearing_with_failed_test(c)
        await c.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary", json={}, expect=201)
        sig = f"/api/v1/hearings/{hid}/act/signatures"
        entered = [{"role": "head_of_office", "name": "А. Заведующая", "no_account": True},
                   {"role": "technician", "name": "Б. Техник", "no_account": True},
                   {"role": "secretary", "name": "В. Секретарь", "no_account": True}]
        status, _ = await c.call("POST", sig, role="secretary", json=entered[0])
        assert status == 201
        for role in ("secretary", "head_of_office", "admin"):     # whoever enters it: one is the limit
            status, err = await c.call("POST", sig, role=role, json=entered[1])
            assert (status, err["error"]) == (409, "one_no_account"), (role, err)
            assert err["message"] == "at most one signer without an account; the others sign from their own accounts"
        status, err = await c.call("POST", sig, role="secretary", json=entered[2])
        assert (status, err["error"], err["field"]) == (403, "own_role", "role"), err
        assert "signs the secretary signature itself" in err["message"]
        _, act = await c.call("GET", f"/api/v1/hearings/{hid}/act", expect=200)
        assert act["status"] == "draft" and [s["role"] for s in act["signatures"]] == ["head_of_office"]

        # the other two sign from their own accounts: two distinct accounts on the final act
        await c.call("POST", sig, role="secretary", json={}, expect=201)
        _, act = await c.call("POST", sig, role="technician", json={}, expect=201)
        assert act["status"] == "final"
        assert [(s["role"], s["user_name"], s["entered_by"]) for s in act["signatures"]] == [
            ("head_of_office", None, "secretary-1"), ("secretary", "secretary-1", None),
            ("technician", "technician-1", None)]

        # an account never enters its own role, even first on a fresh act: nothing is stored
        _, h2 = await c.schedule(start=c.clock() + 3 * H, case="1-56/2026")
        await c.call("POST", f"/api/v1/hearings/{h2['id']}/act", role="secretary", json={}, expect=201)
        sig2 = f"/api/v1/hearings/{h2['id']}/act/signatures"
        for role in ("head_of_office", "secretary"):
            status, err = await c.call("POST", sig2, role=role, json={**entered[0], "role": role})
            assert (status, err["error"]) == (403, "own_role"), (role, err)
        _, act = await c.call("GET", f"/api/v1/hearings/{h2['id']}/act", expect=200)
        assert act["signatures"] == []


def test_an_act_sealed_before_accounts_signed_renders_as_it_was_sealed():
    """Acts made final before signatures knew their accounts (migration 0007 leaves their user_name
    NULL) print no "entered by": their documents keep the bytes they were sealed with."""
    content = sample_content()
    at = dt.datetime(2026, 12, 1, 6, tzinfo=dt.UTC)
    sigs = [{"role": r, "name": f"{r} name", "user_name": None, "recorded_by": "secretary-1", "signed_at": at}
            for r in acts.SIGNER_ROLES]
    act = {"hearing_id": 1, "status": "final", "trigger": "cannot_fix", "content": content,
           "content_sha256": acts.sha256(content), "documents": None, "created_at": at, "created_by": "system",
           "updated_at": at, "finalized_at": at}
    legacy = {"content_sha256": act["content_sha256"],
              "signatures": [{"role": s["role"], "name": s["name"], "signed_at": "2026-12-01T06:00:00Z"}
                             for s in sigs]}
    old = acts.act_view({**act, "final_sha256": acts.sha256(legacy)}, sigs)
    assert [s["entered_by"] for s in old["signatures"]] == [None, None, None]
    assert "secretary-1" not in acts.render_html(old, "kk")
    # today: at most one signer with no account, the others from their own accounts
    sigs = [{**sigs[0]}, {**sigs[1], "name": "secretary-1", "user_name": "secretary-1"},
            {**sigs[2], "name": "technician-1", "user_name": "technician-1", "recorded_by": "technician-1"}]
    new = acts.act_view({**act, "final_sha256": acts.seal(act, sigs, at).sha256}, sigs)
    assert [s["entered_by"] for s in new["signatures"]] == ["secretary-1", None, None]
    assert "енгізген secretary-1" in acts.render_html(new, "kk")
