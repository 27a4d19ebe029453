"""A user's scope is given and changed by an admin (issue 11, item 1): through the API (POST and
PATCH /users) and the command line (`user add --institution --region`); bad scopes are refused with
the field named and nothing written; a change takes effect at the user's next request; /me shows it.
Against the app on a real socket, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from controller import access
from controller.store import users as users_repo
from tests.controller_kit import Controller

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        yield c


async def audit_count(ctl) -> int:
    async with ctl.db.read() as conn:
        return len(await users_repo.list_audit(conn, limit=10000))


async def test_a_user_is_given_institutions_and_regions_and_the_list_shows_them(ctl):
    status, out = await ctl.call("POST", "/api/v1/users", expect=201, json={
        "name": "sec-almaty", "role": "secretary", "institutions": ["almaty-medeu-district"], "regions": ["Almaty"]})
    assert out["institutions"] == ["almaty-medeu-district"] and out["regions"] == ["Almaty"] and out["token"]
    _, users = await ctl.call("GET", "/api/v1/users", expect=200)
    row = next(u for u in users["items"] if u["name"] == "sec-almaty")
    assert row["institutions"] == ["almaty-medeu-district"] and row["regions"] == ["Almaty"]
    national = next(u for u in users["items"] if u["name"] == "viewer-1")
    assert national["institutions"] == [] and national["regions"] == []
    status, me = await ctl.call("GET", "/api/v1/me", token=out["token"], expect=200)
    assert me["national"] is False and me["institutions"] == ["almaty-medeu-district"] and me["regions"] == ["Almaty"]
    _, me = await ctl.call("GET", "/api/v1/me", role="viewer", expect=200)
    assert me["national"] is True and me["institutions"] == [] and me["regions"] == []


@pytest.mark.parametrize("body,field", [
    ({"role": "secretary", "institutions": ["no-such-court"]}, "institutions"),
    ({"role": "secretary", "regions": ["Atlantis"]}, "regions"),
    ({"role": "admin", "regions": ["Almaty"]}, "institutions"),
    ({"role": "coordinator", "scope": "regional"}, "regions"),
    ({"role": "secretary", "regions": ["Almaty\r\nBcc: x@example.org"]}, "regions.0"),
])
async def test_a_bad_scope_is_refused_naming_the_field_and_nothing_is_written(ctl, body, field):
    before = await audit_count(ctl)
    status, out = await ctl.call("POST", "/api/v1/users", json={"name": "someone", **body})
    assert status == 400 and out["error"] == "invalid" and out["field"] == field, out
    _, users = await ctl.call("GET", "/api/v1/users", expect=200)
    assert "someone" not in {u["name"] for u in users["items"]}
    assert await audit_count(ctl) == before


async def test_a_change_of_scope_takes_effect_at_the_next_request_and_is_audited(ctl, fake_clock):
    start = fake_clock() + dt.timedelta(days=2)
    _, hearing = await ctl.schedule(start=start, room=("kyzylorda-district-2", "Зал 1"),
                                    participants=["sizo-kyzylorda-1"])
    hid = hearing["id"]
    _, u = await ctl.call("POST", "/api/v1/users", expect=201,
                          json={"name": "sec-k", "role": "secretary", "regions": ["Kyzylorda"]})
    token = u["token"]
    assert (await ctl.call("GET", f"/api/v1/hearings/{hid}", token=token))[0] == 200
    _, changed = await ctl.call("PATCH", "/api/v1/users/sec-k", expect=200,
                                json={"regions": [], "institutions": ["almaty-medeu-district"]})
    assert changed["regions"] == [] and changed["institutions"] == ["almaty-medeu-district"]
    status, out = await ctl.call("GET", f"/api/v1/hearings/{hid}", token=token)
    missing = await ctl.call("GET", "/api/v1/hearings/999999", token=token)
    assert status == 404 and out == {**missing[1], "message": f"no hearing {hid}"}
    # Emptying the one list left would make the user national: refused unless both are sent empty.
    status, out = await ctl.call("PATCH", "/api/v1/users/sec-k", json={"institutions": []})
    assert status == 400 and out["field"] == "institutions" and "national" in out["message"]
    assert (await ctl.call("GET", f"/api/v1/hearings/{hid}", token=token))[0] == 404
    _, changed = await ctl.call("PATCH", "/api/v1/users/sec-k", expect=200, json={"institutions": [], "regions": []})
    assert changed["institutions"] == [] and changed["regions"] == []
    assert (await ctl.call("GET", f"/api/v1/hearings/{hid}", token=token))[0] == 200
    # The role too; an unchanged PATCH writes no row.
    _, changed = await ctl.call("PATCH", "/api/v1/users/sec-k", expect=200, json={"role": "head_of_office"})
    assert changed["role"] == "head_of_office"
    before = await audit_count(ctl)
    await ctl.call("PATCH", "/api/v1/users/sec-k", expect=200, json={"role": "head_of_office"})
    assert await audit_count(ctl) == before
    async with ctl.db.read() as conn:
        rows = await users_repo.list_audit(conn, target="user:sec-k")
    changes = [r["detail"] for r in rows if r["action"] == "user.change"]
    assert {"role": "head_of_office"} in changes
    assert {"institutions": [], "regions": []} in changes or {"institutions": []} in changes
    assert {"regions": [], "institutions": ["almaty-medeu-district"]} in changes


async def test_patch_refuses_what_does_not_go_together_and_keeps_the_user_as_they_were(ctl):
    await ctl.call("POST", "/api/v1/users", expect=201, json={"name": "co", "role": "coordinator",
                                                              "scope": "regional", "regions": ["Almaty"]})
    status, out = await ctl.call("PATCH", "/api/v1/users/co", json={"regions": []})
    assert status == 400 and out["field"] == "regions"
    status, out = await ctl.call("PATCH", "/api/v1/users/co", json={"role": "admin"})
    assert status == 400 and out["field"] == "institutions"
    status, out = await ctl.call("PATCH", "/api/v1/users/co", json={"role": None})
    assert status == 400 and out["field"] == "role"
    assert (await ctl.call("PATCH", "/api/v1/users/ghost", json={"role": "viewer"}))[0] == 404
    assert (await ctl.call("PATCH", "/api/v1/users/co", role="secretary", json={"role": "admin"}))[0] == 403
    _, users = await ctl.call("GET", "/api/v1/users", expect=200)
    co = next(u for u in users["items"] if u["name"] == "co")
    assert co["role"] == "coordinator" and co["regions"] == ["Almaty"] and co["scope"] == "regional"


async def test_an_institution_with_a_scoped_user_cannot_be_removed(ctl):
    """Removing the only institution of a user's scope would make them national without anyone
    deciding it."""
    status, inst = await ctl.call("POST", "/api/v1/institutions", expect=201, json={
        "id": "new-court", "kind": "court", "level": "district", "name": "New court", "region": "Almaty",
        "timezone": "Asia/Almaty"})
    await ctl.call("POST", "/api/v1/users", expect=201,
                   json={"name": "sec-new", "role": "secretary", "institutions": ["new-court"]})
    status, out = await ctl.call("DELETE", "/api/v1/institutions/new-court")
    assert status == 409, out
    async with ctl.db.read() as conn:
        u = await users_repo.get_user(conn, "sec-new")
        scope = await access.load(conn, u["id"])
    assert scope.covered == {"new-court"}


def _cli(db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args, "--db", db], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_user_add_on_the_command_line_takes_institutions_and_regions(tmp_path):
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    imported = _cli(db, "sites", "import", os.path.join(ROOT, "controller", "sample_sites.yaml"))
    assert imported.returncode == 0, imported.stderr
    ok = _cli(db, "user", "add", "sec-cli", "--role", "secretary", "--institution", "almaty-medeu-district",
              "--region", "Kyzylorda")
    assert ok.returncode == 0, ok.stderr
    bad = _cli(db, "user", "add", "co-cli", "--role", "coordinator", "--scope", "regional")
    assert bad.returncode == 2 and "region" in bad.stderr
    bad = _cli(db, "user", "add", "x-cli", "--role", "secretary", "--institution", "nowhere")
    assert bad.returncode == 2 and "nowhere" in bad.stderr

    async def scope_of(name: str) -> access.Scope:
        from controller.store.db import Database
        d = Database(db)
        try:
            async with d.read() as conn:
                return await access.load(conn, (await users_repo.get_user(conn, name))["id"])
        finally:
            await d.close()

    import asyncio
    scope = asyncio.run(scope_of("sec-cli"))
    assert scope.institutions == {"almaty-medeu-district"} and scope.regions == {"Kyzylorda"}
    assert {"almaty-medeu-district", "kyzylorda-district-2", "sizo-kyzylorda-35-1"} <= scope.covered
    assert "sizo-almaty-70-1" not in scope.covered


async def test_the_last_admin_stays_and_a_coordinator_level_goes_with_the_role(ctl):
    status, out = await ctl.call("PATCH", "/api/v1/users/admin-1", json={"role": "viewer"})
    assert status == 409 and "last active admin" in out["message"]
    status, out = await ctl.call("DELETE", "/api/v1/users/admin-1")
    assert status == 409 and "last active admin" in out["message"]
    _, admin2 = await ctl.call("POST", "/api/v1/users", expect=201, json={"name": "admin-2", "role": "admin"})
    await ctl.call("PATCH", "/api/v1/users/admin-1", expect=200, json={"role": "viewer"})
    ctl.tokens["admin"] = admin2["token"]
    status, out = await ctl.call("POST", "/api/v1/users", json={"name": "s", "role": "secretary", "scope": "regional"})
    assert status == 400 and out["field"] == "scope"
    await ctl.call("POST", "/api/v1/users", expect=201, json={"name": "co", "role": "coordinator",
                                                              "scope": "regional", "regions": ["Almaty"]})
    _, out = await ctl.call("PATCH", "/api/v1/users/co", expect=200, json={"role": "secretary"})
    assert out["role"] == "secretary" and out["scope"] is None and out["regions"] == ["Almaty"]


async def test_a_region_left_empty_under_a_users_scope_is_refused(ctl):
    await ctl.call("POST", "/api/v1/users", expect=201, json={"name": "tech-k", "role": "technician",
                                                              "regions": ["Kyzylorda"]})
    moved = {"region": "Kyzylorda oblysy"}
    await ctl.call("PATCH", "/api/v1/institutions/kyzylorda-district-2", expect=200, json=moved)
    status, out = await ctl.call("PATCH", "/api/v1/institutions/sizo-kyzylorda-35-1", json=moved)
    assert status == 409 and "tech-k" in out["message"] and "Kyzylorda" in out["message"], out
    _, inst = await ctl.call("GET", "/api/v1/institutions/sizo-kyzylorda-35-1", expect=200)
    assert inst["region"] == "Kyzylorda"                     # nothing changed
    await ctl.call("PATCH", "/api/v1/users/tech-k", expect=200, json={"regions": ["Kyzylorda oblysy"]})
    await ctl.call("PATCH", "/api/v1/institutions/sizo-kyzylorda-35-1", expect=200, json=moved)


async def test_an_agreement_is_given_only_by_a_coordinator_whose_scope_holds_the_court(ctl, fake_clock):
    """A coordinator who sees a hearing through its participant (an Almaty SIZO) does not agree the
    date of a Kyzylorda court's hearing (rules 11, 12: the coordinator of the court's region)."""
    _, h = await ctl.schedule(start=fake_clock() + dt.timedelta(days=2), room=("kyzylorda-district-2", "Зал 1"),
                              participants=["sizo-almaty-1"])
    _, almaty = await ctl.call("POST", "/api/v1/users", expect=201, json={
        "name": "co-almaty", "role": "coordinator", "regions": ["Almaty"]})
    _, kyz = await ctl.call("POST", "/api/v1/users", expect=201, json={
        "name": "co-kyz", "role": "coordinator", "regions": ["Kyzylorda"]})
    assert (await ctl.call("GET", f"/api/v1/hearings/{h['id']}", token=almaty["token"]))[0] == 200
    status, out = await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", token=almaty["token"], json={})
    assert status == 403 and "outside your scope" in out["message"]
    assert (await ctl.hearing(h["id"]))["agreement"]["state"] != "given"
    _, agreed = await ctl.call("POST", f"/api/v1/hearings/{h['id']}/agreement", token=kyz["token"], json={},
                               expect=200)
    assert agreed["agreement"]["by"] == "co-kyz"
