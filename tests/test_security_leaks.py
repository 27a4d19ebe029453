"""Issue 11, item 7 (leaks closed): CSV cells that a spreadsheet would run are neutralised, text that
would break an e-mail header is refused, act.html carries a CSP, database passwords stay out of
messages, secrets come through systemd credentials, /metrics can be closed or moved."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.controller_kit import Controller
from tests.procs import free_port

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-Pa55"

H = dt.timedelta(hours=1)
FORMULA = '=HYPERLINK("http://x","y")'


@pytest.fixture
async def ctl(tmp_path, fake_clock):
    async with Controller(f"sqlite:///{tmp_path / 'controller.sqlite'}", fake_clock) as c:
        yield c


async def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(ctl):
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H, case=FORMULA)
    _, text = await ctl.call("GET", "/api/v1/exports/hearings?format=csv", role="viewer", expect=200)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["case_number"] == "'" + FORMULA
    assert rows[0]["id"] == str(h["id"]) and rows[0]["room"] == "Зал 1"      # other cells as they were
    _, j = await ctl.call("GET", "/api/v1/exports/hearings?format=json", role="viewer", expect=200)
    assert j["hearings"][0]["case_number"] == FORMULA                       # JSON carries the data as it is
    _, text = await ctl.call("GET", f"/api/v1/hearings/{h['id']}/events?format=csv", role="viewer", expect=200)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["kind"] == "hearing_scheduled"
    for r in rows:
        assert all(not cell or cell[0] not in "=+-@\t\r" for cell in r.values()), r


def test_csv_cell_prefixes_exactly_the_owasp_leading_characters():
    from controller.api.exports import csv_cell
    for lead in "=+-@\t\r":
        assert csv_cell(lead + "1") == "'" + lead + "1"
    assert [csv_cell(v) for v in ("2-1/2026", "", None, 5, -3, "a=b")] == ["2-1/2026", "", "", 5, -3, "a=b"]


@pytest.mark.parametrize("text", ["1-1\r\nBcc: x@y", "1-1\nBcc: x@y", "1-1\rX", "1-1\x00", "1-1\u2028x"])
async def test_header_breaking_text_is_refused_naming_the_field(ctl, text):
    room = await ctl.room_id("almaty-medeu-district")
    body = {"case_number": text, "room_id": room, "start_utc": (ctl.clock() + 48 * H).isoformat(),
            "participants": [{"terminal_id": "sizo-almaty-1"}]}
    _, err = await ctl.call("POST", "/api/v1/hearings", role="secretary", json=body, expect=400)
    assert (err["error"], err["field"]) == ("invalid", "case_number")
    _, h = await ctl.schedule(start=ctl.clock() + 48 * H)
    _, err = await ctl.call("PATCH", f"/api/v1/hearings/{h['id']}", role="secretary",
                            json={"case_number": text}, expect=400)
    assert err["field"] == "case_number"
    _, err = await ctl.call("PATCH", "/api/v1/institutions/sizo-almaty-70-1", json={"name": text}, expect=400)
    assert err["field"] == "name"
    assert (await ctl.hearing(h["id"]))["case_number"] == "2-1234/2026"


def test_notify_never_builds_a_header_from_multi_line_text():
    from email.message import EmailMessage

    from controller.notify import email_text, header_text
    payload = {"step": 1, "cause_text": {"kk": "k", "ru": "r"}, "escalation_id": 1, "notification_id": 2,
               "hearing": {"case_number": "1-1\r\nBcc: x@y", "court": {"id": "c", "name": "Суд\nX-Evil: 1"},
                           "room": "Зал", "start_local": "2026-12-01T11:00:00+05:00", "participants": []}}
    subject, _ = email_text(payload)
    assert not any(c in subject for c in "\r\n") and "Bcc: x@y" in subject
    assert header_text("a\r\n\tb\x00c\u2028d") == "a b c d"
    msg = EmailMessage()
    msg["Subject"] = subject
    assert "\nBcc:" not in msg.as_string() and "\nX-Evil:" not in msg.as_string()


async def test_act_html_carries_a_csp_that_runs_nothing(ctl):
    from tests.test_acts import hearing_with_failed_test
    hid = await hearing_with_failed_test(ctl)
    await ctl.call("POST", f"/api/v1/hearings/{hid}/act", role="secretary",
                   json={"note": "<script>alert(1)</script>"}, expect=201)
    resp = await ctl.client.get(f"/api/v1/hearings/{hid}/act.html?lang=ru",
                                headers={"Authorization": f"Bearer {ctl.tokens['viewer']}"})
    assert resp.status == 200
    csp = {d.split()[0]: d.split()[1:] for d in resp.headers["Content-Security-Policy"].split("; ")}
    assert csp["default-src"] == ["'none'"] and csp["style-src"] == ["'unsafe-inline'"]
    assert "script-src" not in csp and csp["frame-ancestors"] == ["'none'"]
    html = await resp.text()
    assert "<style>" in html and "<script" not in html       # the template needs its inline style, no more


@pytest.mark.parametrize("args, env", [
    (["migrate", "--db", "postgresql://vks:{s}@127.0.0.1:{p}/vks"], {}),
    (["serve", "--db", "postgresql://vks:{s}@127.0.0.1:{p}/vks", "--listen", "127.0.0.1:{l}"], {}),
    (["migrate", "--db", "mysql://vks:{s}@127.0.0.1:{p}/vks"], {}),
    (["migrate", "--db", "postgresql+psycopg2://vks:{s}@127.0.0.1:{p}/vks"], {}),
    (["migrate"], {"VKS_CONTROLLER__DB": "postgresql://vks:{s}@127.0.0.1:{p}/"}),
    (["serve", "--listen", "127.0.0.1:{l}"], {"VKS_CONTROLLER__DB": "postgresql://vks:{s}@127.0.0.1:{p}/vks"}),
], ids=["migrate", "serve", "scheme", "driver", "env-no-db", "serve-env"])
def test_a_database_password_appears_in_no_message_or_log(args, env):
    closed, listen = free_port(), free_port()
    fill = {"s": SECRET, "p": closed, "l": listen}
    environ = {**os.environ, "PYTHONPATH": str(REPO), **{k: v.format(**fill) for k, v in env.items()}}
    environ.pop("VKS_CONTROLLER_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "controller", *[a.format(**fill) for a in args]],
                       capture_output=True, text=True, env=environ, cwd=REPO, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode in (1, 2), out
    assert out.strip() and SECRET not in out, out
