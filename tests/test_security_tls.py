"""TLS on every link and secrets kept out of the logs (rules 5, 6; issue 7), with real processes.

- `vks-controller serve` takes its certificate and key from the config (`tls.cert_file`,
  `tls.key_file`); the API, the web page and the agents' WebSocket are then HTTPS / wss only.
- `vks-agent run` connects with wss:// and verifies the controller against `controller.ca_file`;
  a controller whose certificate that CA did not sign is refused (the agent never says hello).
- The whole flow (schedule a hearing, the test session between two real agents, the report on
  the hearing) runs over TLS; afterwards no token or password appears in any process's log, and
  the agents wrote nothing but their outbox (no media recorded).

Certificates come from a throw-away CA made in the test (tests/reliability_kit.make_ca)."""
from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

import pytest

from tests.harness import AgentProc
from tests.procs import REPO, agent_argv, env_with, free_port, stop, token_file, wait_for, wait_http, write_config
from tests.reliability_kit import ControllerProc, client_ctx, http, make_ca

TERMINALS = ("court-almaty-1", "sizo-almaty-1")
PASSWORD = "correct horse battery staple 7"


@pytest.fixture
def pki(tmp_path):
    return make_ca(tmp_path, "good"), make_ca(tmp_path, "rogue")


def test_hearing_flow_over_tls_with_no_secret_logged_and_no_media_written(tmp_path, pki, agent_proc):
    good, _ = pki
    c = ControllerProc(tmp_path, config={"tls": {"cert_file": str(good["cert"]), "key_file": str(good["key"])},
                                         "scheduler": {"poll_s": 0.2},
                                         "checks": {"test_profile": "monitor", "test_duration_s": 3}})
    admin = c.prepare()
    secretary = c.cli("user", "add", "sec-1", "--role", "secretary")
    c.cli("user", "passwd", "sec-1", "--password-stdin", stdin=PASSWORD + "\n")
    terminal_tokens = {t: c.cli("terminal", "token", t) for t in TERMINALS}
    ctx = client_ctx(good["ca"])
    c.start(ssl_ctx=ctx)
    agents: list[AgentProc] = []
    try:
        assert c.url.startswith("https://")
        # Plain HTTP on the TLS port gets no answer; HTTPS with the right CA does.
        with pytest.raises((urllib.error.URLError, HTTPException, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{c.port}/healthz", timeout=5)
        with pytest.raises(urllib.error.URLError):     # not trusted without the CA
            urllib.request.urlopen(c.url + "/healthz", timeout=5, context=ssl.create_default_context())
        # A password login (the web page's way) over TLS.
        status, me = http("POST", c.url + "/api/v1/login", None, {"username": "sec-1", "password": PASSWORD},
                          ssl_ctx=ctx, headers={"X-Requested-With": "vks-web"})
        assert status == 200, me
        for t in TERMINALS:
            agents.append(agent_proc(t, c.ws_url, terminal_tokens[t], ca=good["ca"]))

        def both_online():
            status, terms = http("GET", c.url + "/api/v1/terminals", secretary, ssl_ctx=ctx)
            return status == 200 and set(TERMINALS) <= {t["id"] for t in terms["items"] if t.get("online")}
        wait_for(both_online, 60, what="both agents online over wss")

        _, rooms = http("GET", c.url + "/api/v1/rooms?institution_id=almaty-medeu-district", secretary, ssl_ctx=ctx)
        room_id = next(r["id"] for r in rooms["items"] if r["name"] == "Зал 1")
        start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
        status, h = http("POST", c.url + "/api/v1/hearings", secretary, {
            "case_number": "2-0007/2026", "room_id": room_id, "start_utc": start.isoformat(),
            "duration_min": 60, "participants": [{"terminal_id": "sizo-almaty-1"}]}, ssl_ctx=ctx)
        assert status == 201, h

        def finished():
            _, got = http("GET", f"{c.url}/api/v1/hearings/{h['id']}", secretary, ssl_ctx=ctx)
            return got if got["test_request"]["result"] is not None else None
        got = wait_for(finished, 90, step=0.5, what="test result on the hearing")
        assert got["test_request"]["result"]["connected"] is True, got["test_request"]["result"].get("error")
    finally:
        codes = [a.stop() for a in agents]
        c.stop()
    assert codes == [0] * len(codes)

    # Secrets never logged: tokens (people's and terminals'), the password.
    logs = {"controller": c.log_text(), **{a.terminal: a.log_text() for a in agents}}
    secrets = {"admin token": admin, "secretary token": secretary, "password": PASSWORD,
               **{f"{t} token": tok for t, tok in terminal_tokens.items()}}
    for name, text in logs.items():
        assert "DEBUG" in text or name != "controller"          # the loudest level was on
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in the {name} log"

    # No media recorded: each agent's home (its working and temporary directory) holds only
    # its token and its outbox (SQLite, with its WAL files), all small.
    for home in (a.home for a in agents):
        files = {p.relative_to(home).as_posix(): p.stat().st_size for p in home.rglob("*") if p.is_file()}
        extra = {f for f in files if f != "token" and not f.startswith("outbox.sqlite")}
        assert not extra, f"the agent wrote {extra}"
        assert sum(files.values()) < 2 * 1024 * 1024, files


def test_agent_refuses_a_controller_whose_certificate_does_not_verify(tmp_path, pki, agent_proc):
    """The controller presents a certificate from another CA: the agent (trusting only the
    good CA) aborts the handshake - no token is sent, the terminal never comes online."""
    good, rogue = pki
    c = ControllerProc(tmp_path, config={"tls": {"cert_file": str(rogue["cert"]), "key_file": str(rogue["key"])}})
    admin = c.prepare()
    token = c.cli("terminal", "token", "court-almaty-1")
    c.start(ssl_ctx=client_ctx(rogue["ca"]))
    try:
        agent = agent_proc("court-almaty-1", c.ws_url, token, ca=good["ca"])
        try:
            wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in agent.log_text()
                     or "certificate verify failed" in agent.log_text(), 30,
                     what="the agent's log names the failed verification")
            status, terms = http("GET", c.url + "/api/v1/terminals", admin, ssl_ctx=client_ctx(rogue["ca"]))
            assert not [t for t in terms["items"] if t.get("online")]
            assert agent.proc.poll() is None, "the agent keeps running (and retrying)"
        finally:
            agent.stop()
    finally:
        c.stop()
    assert "court-almaty-1 connected" not in c.log_text()
    assert token not in agent.log_text()


def test_tls_settings_are_checked_at_start(tmp_path, pki):
    good, rogue = pki
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def serve(cfg: str) -> subprocess.CompletedProcess:
        (tmp_path / "c.yaml").write_text(cfg)
        return subprocess.run([sys.executable, "-m", "controller.cli", "serve", "--config", str(tmp_path / "c.yaml"),
                               "--db", f"sqlite:///{tmp_path}/x.sqlite", "--listen", "127.0.0.1:0"],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    out = serve(f"tls: {{cert_file: {good['cert']}}}\n")
    assert out.returncode == 2 and "tls" in out.stderr and "key_file" in out.stderr, out.stderr
    out = serve(f"tls: {{cert_file: {good['cert']}, key_file: {tmp_path / 'missing.pem'}}}\n")
    assert out.returncode == 2 and "missing.pem" in out.stderr, out.stderr
    out = serve(f"tls: {{cert_file: {good['cert']}, key_file: {rogue['key']}}}\n")   # key of another cert
    assert out.returncode == 2 and "tls" in out.stderr, out.stderr


def test_direct_test_session_over_https_to_a_tls_responder(tmp_path, pki):
    """The responder (direct tests between two terminals, no controller) can serve HTTPS:
    `vks-agent responder --tls-cert --tls-key`, `vks-agent test --peer https://... --ca-file`.
    A responder whose certificate the caller's CA did not sign is refused before any offer."""
    good, rogue = pki
    config = write_config(tmp_path, "session:\n  host_addresses: ['127.0.0.1']\n")
    port = free_port()
    with open(tmp_path / "responder.log", "wb") as log:
        proc = subprocess.Popen(agent_argv("responder", "--listen", f"127.0.0.1:{port}",
                                           "--tls-cert", str(good["cert"]), "--tls-key", str(good["key"]),
                                           "--token-file", str(token_file(tmp_path))),
                                env=env_with(config), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http(f"https://127.0.0.1:{port}/healthz", 20, proc=proc, ssl_ctx=client_ctx(good["ca"]))
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError((tmp_path / "responder.log").read_text(errors="replace")) from exc

        def test(ca: Path) -> subprocess.CompletedProcess:
            return subprocess.run(agent_argv("test", "--peer", f"https://127.0.0.1:{port}", "--duration", "2",
                                             "--profile", "monitor", "--json", "--ca-file", str(ca),
                                             "--token-file", str(token_file(tmp_path))),
                                  env=env_with(config), cwd=REPO, capture_output=True, text=True, timeout=120)
        ok = test(good["ca"])
        report = json.loads(ok.stdout)
        assert report["connected"] is True, report["error"]
        bad = test(rogue["ca"])
        report = json.loads(bad.stdout)
        assert bad.returncode == 4 and report["connected"] is False
        assert "certificate" in report["error"].lower(), report["error"]
    finally:
        stop(proc)
