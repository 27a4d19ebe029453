"""Bad input on the REST API (issue 7): schemathesis generates requests from the controller's own
OpenAPI document - valid and invalid bodies, query strings and path parameters - and sends them
with an admin token to a real `vks-controller serve` process on SQLite. No request may get a 5xx,
and the process must log no unhandled error. Bounded (a few dozen examples per operation, about
a minute in all); run `st run URL/api/v1/openapi.json` by hand for a longer campaign.

Regression tests for what the fuzzing found come after it."""
from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.reliability_kit import ControllerProc, http

ADMIN = "root"

# POST /hearings/import takes a file: the generated strings are sent as the body's text.
schemathesis.serializer.alias("text/csv", "text/plain")
schemathesis.serializer.alias("text/calendar", "text/plain")
EXAMPLES = 50
EXAMPLES_PG = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    c = ControllerProc(tmp)
    token = c.prepare(ADMIN)
    # A second admin whose tokens the fuzzer may revoke freely (DELETE /users/{name}/tokens).
    c.cli("user", "add", "other-admin", "--role", "admin")
    c.start()
    yield c, token
    c.stop()


@pytest.fixture(scope="module")
def served_pg(tmp_path_factory, pg_cluster):
    """The same on PostgreSQL (stricter than SQLite: no NUL in text, real integer widths)."""
    tmp = tmp_path_factory.mktemp("fuzz-pg")
    c = ControllerProc(tmp, pg_cluster.create_database(f"fuzz_{uuid.uuid4().hex[:8]}"))
    token = c.prepare(ADMIN)
    c.cli("user", "add", "other-admin", "--role", "admin")
    c.start()
    yield c, token
    c.stop()


def test_no_request_gets_a_server_error(served):
    """Every operation of the document, EXAMPLES generated requests each (schemathesis'
    strategies driven by hypothesis; schemathesis' pytest plugin does not load on pytest 9)."""
    fuzz(*served, EXAMPLES)


@pytest.mark.postgres
def test_no_request_gets_a_server_error_on_postgresql(served_pg):
    fuzz(*served_pg, EXAMPLES_PG)
    log = served_pg[0].log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]


def fuzz(c: ControllerProc, token: str, examples: int) -> None:
    schema = schemathesis.openapi.from_url(c.url + "/api/v1/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=examples, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            if case.path_parameters and case.path_parameters.get("name") == ADMIN:
                case.path_parameters["name"] = "other-admin"   # keep the fuzzer's own token alive
            headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call(base_url=c.url, headers=headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:   # collect every operation's failure, then report them all
            failures.append(f"{op.label}: {type(exc).__name__}: {str(exc)[:1500]}")
        tried += 1
    assert tried >= 40, tried
    assert not failures, "\n\n".join(failures)


def test_the_fuzzed_controller_logged_no_unhandled_error(served):
    """Runs after the fuzzing (file order): the server logged no 500 and is still healthy."""
    c, token = served
    log = c.log_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:6000]
    assert http("GET", c.url + "/healthz")[0] == 200
    assert http("GET", c.url + "/api/v1/hearings", token)[0] == 200


# ---- regressions: what the fuzzing found ---------------------------------------------------

@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/institutions/almaty-medeu-district", {"region": None}, "region"),
    ("/api/v1/institutions/almaty-medeu-district", {"name": None, "kind": None}, "kind"),
    ("/api/v1/terminals/court-almaty-1", {"name": None}, "name"),
    ("/api/v1/terminals/court-almaty-1", {"institution_id": None}, "institution_id"),
])
def test_patch_with_null_for_a_required_field_is_400_naming_it(served, path, body, field):
    """Found by schemathesis: PATCH with an explicit null for a NOT NULL column was a 500
    (IntegrityError); now a 400 naming the field, and nothing is changed."""
    c, token = served
    before = http("GET", c.url + path, token)
    status, out = http("PATCH", c.url + path, token, body)
    assert status == 400, (status, out)
    assert out["error"] == "invalid" and out["field"] == field, out
    assert http("GET", c.url + path, token) == before


def test_integers_beyond_the_id_range_are_400_or_404_not_500(served):
    """Found by schemathesis: a path id or body integer past 2**63 overflowed the database driver
    (500) - past 2**31 on PostgreSQL, whose ids are INTEGER. A path id is now 404 (no such
    row), a body number 400 naming the field."""
    c, token = served
    huge = 29034927694587753398272
    assert http("GET", f"{c.url}/api/v1/rooms/{huge}", token)[0] == 404
    assert http("GET", f"{c.url}/api/v1/hearings/{huge}", token)[0] == 404
    status, out = http("POST", c.url + "/api/v1/hearings", token, {
        "case_number": "2-1/2026", "room_id": huge, "start_utc": "2030-01-01T10:00:00Z",
        "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 400 and out["field"] == "room_id", (status, out)
    status, out = http("POST", c.url + "/api/v1/hearings", token, {
        "case_number": "2-1/2026", "room_id": 1, "start_utc": "2030-01-01T10:00:00Z",
        "participants": [{"terminal_id": "sizo-almaty-1", "x": [1, -huge]}]})
    assert status == 400 and out["field"] == "participants.0.x.1", (status, out)


@pytest.mark.postgres
@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/v1/institutions", {"id": "x-1", "kind": "sizo", "name": "a\u0000b", "region": "r",
                                      "timezone": "Asia/Almaty"}),
    ("PATCH", "/api/v1/institutions/almaty-medeu-district", {"name": "a\u0000b"}),
    ("POST", "/api/v1/hearings", {"case_number": "2-1/2026", "room_id": 1, "start_utc": "2030-01-01T10:00:00Z",
                                  "participants": [{"terminal_id": "sizo\u0000"}]}),
    ("POST", "/api/v1/login", {"username": "a\u0000", "password": "x"}),
    ("GET", "/api/v1/institutions?region=a%00b", None),
    ("GET", "/api/v1/institutions/a%00b", None),
])
def test_nul_characters_are_400_not_500_on_postgresql(served_pg, method, path, body):
    """Found on PostgreSQL, which refuses NUL in text (SQLite takes it): every such request was a
    500. Now 400 naming where, before the database is touched."""
    c, token = served_pg
    status, out = http(method, c.url + path, token, body,
                       headers={"X-Requested-With": "vks-web"} if "login" in path else None)
    assert status == 400 and out["error"] == "invalid", (status, out)


@pytest.mark.postgres
def test_ids_past_32_bits_are_404_or_400_on_postgresql(served_pg):
    """Found by the PostgreSQL fuzzing: room_id 3935847014750126 fits 64 bits but not the INTEGER
    column (asyncpg: value out of int32 range) - a 500."""
    c, token = served_pg
    big = 3935847014750126
    assert http("GET", f"{c.url}/api/v1/rooms/{big}", token)[0] == 404
    assert http("GET", f"{c.url}/api/v1/rooms/{2**31}", token)[0] == 404
    status, out = http("POST", c.url + "/api/v1/hearings", token, {
        "case_number": "2-1/2026", "room_id": big, "start_utc": "2030-01-01T10:00:00Z",
        "participants": [{"terminal_id": "sizo-almaty-1"}]})
    assert status == 400 and out["field"] == "room_id", (status, out)
