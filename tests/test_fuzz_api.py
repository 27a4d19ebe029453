"""Bad input on the REST API (issue 7): schemathesis generates requests from the controller's own
OpenAPI document - valid and invalid bodies, query strings and path parameters - and sends them
with an admin token to a real `vks-controller serve` process on SQLite. No request may get a 5xx,
and the process must log no unhandled error. Bounded (a few dozen examples per operation, about
a minute in all); run `st run URL/api/v1/openapi.json` by hand for a longer campaign.

Regression tests for what the fuzzing found come after it."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.reliability_kit import ControllerProc, http

ADMIN = "root"
EXAMPLES = 50


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


def test_no_request_gets_a_server_error(served):
    """Every operation of the document, EXAMPLES generated requests each (schemathesis'
    strategies driven by hypothesis; schemathesis' pytest plugin does not load on pytest 9)."""
    c, token = served
    schema = schemathesis.openapi.from_url(c.url + "/api/v1/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
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


def test_integers_beyond_64_bits_are_400_or_404_not_500(served):
    """Found by schemathesis: a path id or body integer past 2**63 overflowed the database driver
    (500). A path id is now 404 (no such row), a body number 400 naming the field."""
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
