"""Bad input at the HTTP level (issue 7), against a real `vks-controller serve` process:
oversized bodies (413 JSON, nothing written), a body that lies about its length, slow clients
(slowloris: many connections sending their headers byte by byte do not keep others waiting, and
are closed after `idle_timeout_s`), and garbage instead of HTTP."""
from __future__ import annotations

import socket
import time

import pytest

from tests.reliability_kit import ControllerProc, http


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    c = ControllerProc(tmp_path_factory.mktemp("http"), config={"max_body_bytes": 4096, "idle_timeout_s": 2})
    token = c.prepare()
    c.start()
    yield c, token
    c.stop()


def test_oversized_bodies_are_413_json_and_write_nothing(served):
    c, token = served
    _, before = http("GET", c.url + "/api/v1/institutions", token)
    big = {"id": "big-one", "kind": "sizo", "name": "x" * 10_000, "region": "r", "timezone": "Asia/Almaty"}
    status, out = http("POST", c.url + "/api/v1/institutions", token, big)
    assert status == 413 and out["error"] == "too_large", (status, out)
    # Not JSON at all, and huge: still 413 (the size is checked before parsing).
    status, out = http("POST", c.url + "/api/v1/hearings", token, raw=b"\xff" * 100_000,
                       headers={"Content-Type": "application/json"})
    assert status == 413, (status, out)
    # The login (no token needed) is limited the same way.
    status, _ = http("POST", c.url + "/api/v1/login", None, raw=b"{" + b" " * 50_000 + b"}",
                     headers={"Content-Type": "application/json", "X-Requested-With": "vks-web"})
    assert status in (400, 413)
    assert http("GET", c.url + "/api/v1/institutions", token)[1] == before


def test_a_body_shorter_than_its_content_length_does_not_hang_the_server(served):
    c, token = served
    port = c.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/v1/institutions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":")
        s.settimeout(30)
        data = s.recv(1000)          # the server gives up after idle_timeout_s (closes or answers)
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
    assert http("GET", c.url + "/healthz")[0] == 200


def test_slowloris_does_not_block_others_and_is_cut_off(served):
    c, token = served
    slow = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
        s.sendall(b"GET /api/v1/hearings HTTP/1.1\r\n")
        slow.append(s)
    try:
        # While 100 clients trickle their headers, everybody else is served.
        for _ in range(5):
            for s in slow[:10]:
                s.sendall(b"X")
            assert http("GET", c.url + "/api/v1/hearings", token, timeout=10)[0] == 200
        # A trickling client is closed once idle_timeout_s (2 s here) has passed since it opened.
        victim = slow[0]
        victim.settimeout(1)
        deadline = time.monotonic() + 30
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                victim.sendall(b"Y")
                closed = victim.recv(100) == b""
            except TimeoutError:
                pass
            except OSError:
                closed = True
        assert closed, "the slow client was never cut off"
    finally:
        for s in slow:
            s.close()
    assert http("GET", c.url + "/healthz")[0] == 200


@pytest.mark.parametrize("garbage", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS hello
                                     b"GET / HTTP/9.9\r\n\r\n", b"\x00" * 1000 + b"\r\n\r\n",
                                     b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
                                     b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 500 + b"\r\n"])
def test_garbage_instead_of_http_is_refused_and_the_server_goes_on(served, garbage):
    c, _ = served
    with socket.create_connection(("127.0.0.1", c.port), timeout=10) as s:
        try:
            s.sendall(garbage)
            s.settimeout(10)
            data = s.recv(200)
        except OSError:
            data = b""
    assert data == b"" or data.startswith(b"HTTP/1.") and b" 5" not in data[:13], data
    assert http("GET", c.url + "/healthz")[0] == 200


def test_password_guessing_is_cut_off_after_five_tries(served):
    """Against the real server (the limiter's details are in test_web_api.py): of 30 guesses
    from one address only the first 5 are even checked; the rest get 429 with Retry-After."""
    c, _ = served
    statuses = []
    for i in range(30):
        status, body = http("POST", c.url + "/api/v1/login", None, {"username": "root", "password": f"guess-{i:04d}"},
                            headers={"X-Requested-With": "vks-web"})
        statuses.append(status)
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}, statuses
    assert "guess-0001" not in c.log_text()
