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


# --- /metrics: a bearer token, an address of its own --------------------------------------------

async def test_metrics_open_by_default_and_behind_a_token_when_configured(tmp_path, fake_clock):
    async with Controller(f"sqlite:///{tmp_path / 'a.sqlite'}", fake_clock) as c:
        assert (await c.client.get("/metrics")).status == 200
    (tmp_path / "token").write_text("  tok-123  \nignored second line\n")
    async with Controller(f"sqlite:///{tmp_path / 'b.sqlite'}", fake_clock,
                          metrics={"token_file": str(tmp_path / "token")}) as c:
        resp = await c.client.get("/metrics")
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["error"] == "unauthorized"
        assert (await c.client.get("/metrics", headers={"Authorization": "Bearer tok-12"})).status == 401
        assert (await c.client.get("/metrics", headers={"Authorization": f"Bearer {c.tokens['admin']}"})).status \
            == 401
        resp = await c.client.get("/metrics", headers={"Authorization": "Bearer tok-123"})
        assert resp.status == 200 and "vks_hearings" in await resp.text()


async def test_metrics_listen_serves_metrics_there_and_not_on_the_main_address(tmp_path, fake_clock):
    import aiohttp
    port = free_port()
    (tmp_path / "token").write_text("tok-9\n")
    async with Controller(f"sqlite:///{tmp_path / 'a.sqlite'}", fake_clock,
                          metrics={"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "token")}) as c:
        assert (await c.client.get("/metrics")).status == 404
        assert (await c.client.get("/healthz")).status == 200
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 401
            async with s.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok-9"}) as r:
                assert r.status == 200 and "vks_hearings" in await r.text()
            async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 404                  # that address serves /metrics only
    with pytest.raises(OSError):                        # stopped with the app
        socket_connect(port)


def socket_connect(port: int) -> None:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_a_missing_metrics_token_file_stops_the_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "controller", "serve", "--db", f"sqlite:///{tmp_path / 'c.sqlite'}",
                        "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                      "VKS_CONTROLLER__METRICS__TOKEN_FILE": str(tmp_path / "nope")})
    assert r.returncode == 2 and "metrics.token_file" in r.stderr, r.stderr


# --- secrets through files and systemd credentials ----------------------------------------------

def test_secrets_come_from_systemd_credentials_or_named_files(tmp_path, monkeypatch):
    from contract.configfile import ConfigError
    from controller.settings import load_settings
    monkeypatch.delenv("VKS_CONTROLLER_CONFIG", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    plain = load_settings(None)                          # no credentials: the defaults, as before
    assert plain.db == "sqlite:///var/vks-controller.sqlite" and plain.smtp.password is None
    assert plain.metrics.token_file is None and plain.metrics.listen is None

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db").write_text(f"postgresql://vks:{SECRET}@db.example/vks\n")
    (creds / "smtp_password").write_text("smtp-pw\n")
    (creds / "webhook_secret").write_text("hook-key\n")
    (creds / "metrics_token").write_text("m-tok\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings(None)
    assert s.db.endswith(f":{SECRET}@db.example/vks") and s.smtp.password.get_secret_value() == "smtp-pw"
    assert s.escalation.webhook_secret.get_secret_value() == "hook-key"
    assert s.metrics.token_file == creds / "metrics_token"
    assert SECRET not in repr(s.smtp) and "smtp-pw" not in str(s.model_dump())

    (creds / "other-db").write_text("sqlite:///tmp/x.sqlite\n")
    cfg = tmp_path / "controller.yaml"
    cfg.write_text("db_file: other-db\nsmtp:\n  password_file: " + str(creds / "smtp_password") + "\n")
    s = load_settings(cfg)                               # a relative *_file is a credential's name
    assert s.db == "sqlite:///tmp/x.sqlite" and s.db_file is None
    cfg.write_text("db: sqlite:///tmp/y.sqlite\n")       # a key given: the credential does not replace it
    assert load_settings(cfg).db == "sqlite:///tmp/y.sqlite"
    cfg.write_text("db: sqlite:///tmp/y.sqlite\ndb_file: other-db\n")
    with pytest.raises(ConfigError, match="not both"):
        load_settings(cfg)
    cfg.write_text("escalation:\n  webhook_secret_file: missing\n")
    with pytest.raises(ConfigError, match="webhook_secret_file") as err:
        load_settings(cfg)
    assert "hook-key" not in str(err.value)


def test_the_unit_hands_secrets_over_as_credentials_and_hides_the_config_directory():
    from controller.credentials import CREDENTIAL_NAMES
    unit = (REPO / "systemd" / "vks-controller.service").read_text()
    lines = [ln.strip() for ln in unit.splitlines()]
    mode = next(ln.split("=", 1)[1] for ln in lines if ln.startswith("ConfigurationDirectoryMode="))
    assert int(mode, 8) & 0o004 == 0, mode                   # others cannot list /etc/vks
    examples = {ln.lstrip("#").split("=", 1)[1].split(":", 1)[0] for ln in lines
                if ln.lstrip("#").startswith("LoadCredential=")}
    assert examples == set(CREDENTIAL_NAMES)
