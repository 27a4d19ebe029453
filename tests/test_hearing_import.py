"""Importing a day's hearings (issue 13, part 1): POST /api/v1/hearings/import takes a CSV or an
iCalendar file (docs/import.md), converts each court's local time with the court's IANA zone, and
schedules every row in one transaction - or none, answering every row's errors in words."""
from __future__ import annotations

import datetime as dt

import aiohttp
import pytest

from tests.controller_kit import Controller

API = "/api/v1"
DAY = "2026-12-03"          # the fake clock's now is 2026-12-01 04:00 UTC


@pytest.fixture
async def ctl(db_url, fake_clock):
    async with Controller(db_url, fake_clock) as c:
        yield c


async def post_file(c: Controller, text: str, ctype: str, role: str = "secretary", token: str | None = None):
    tok = token or c.tokens[role]
    resp = await c.client.post(f"{API}/hearings/import", data=text.encode(),
                               headers={"Authorization": f"Bearer {tok}", "Content-Type": ctype})
    return resp.status, await resp.json()


async def count_hearings(c: Controller) -> int:
    return len((await c.call("GET", f"{API}/hearings", expect=200))[1]["items"])


async def aqtobe_court(c: Controller) -> int:
    """A court keeping Asia/Aqtobe, with a room and its terminal; the room's id."""
    await c.call("POST", f"{API}/institutions", json={
        "id": "aqtobe-district-1", "kind": "court", "level": "district", "name": "Актюбинский районный суд № 1",
        "region": "Актюбинская область", "timezone": "Asia/Aqtobe"}, expect=201)
    _, room = await c.call("POST", f"{API}/rooms", json={"institution_id": "aqtobe-district-1", "name": "Зал 1"},
                           expect=201)
    await c.call("POST", f"{API}/terminals", json={"id": "court-aqtobe-1", "institution_id": "aqtobe-district-1",
                                                   "room_id": room["id"], "name": "Актобе, зал 1"}, expect=201)
    return room["id"]


async def test_csv_schedules_every_row_in_the_courts_local_time(ctl):
    almaty = await ctl.room_id("almaty-medeu-district")
    aqtobe = await aqtobe_court(ctl)
    text = ("case_number,room_id,court,room,start,duration_min,participants,initiative\n"
            f"2-101/2026,{almaty},,,{DAY} 09:00,45,sizo-almaty-1,court\n"
            f"2-102/2026,{aqtobe},,,{DAY} 09:00,30,sizo-almaty-2;inst-karaganda-1,motion\n"
            f"2-103/2026,,Медеуский районный суд г. Алматы,Зал 2,{DAY}T11:30,,sizo-kyzylorda-1,\n")
    status, out = await post_file(ctl, text, "text/csv")
    assert status == 201, out
    got = {h["case_number"]: h for h in out["items"]}
    # Since 1 March 2024 all of Kazakhstan keeps UTC+5: 09:00 in Almaty and in Aqtobe is 04:00 UTC.
    assert got["2-101/2026"]["start_utc"] == f"{DAY}T04:00:00Z"
    assert got["2-102/2026"]["start_utc"] == f"{DAY}T04:00:00Z"
    assert got["2-103/2026"]["start_utc"] == f"{DAY}T06:30:00Z"
    assert got["2-101/2026"]["duration_min"] == 45 and got["2-103/2026"]["duration_min"] == 60
    assert got["2-102/2026"]["initiative"] == "motion"
    assert [p["terminal_id"] for p in got["2-102/2026"]["participants"]] == ["sizo-almaty-2", "inst-karaganda-1"]
    assert got["2-103/2026"]["room"]["name"] == "Зал 2"
    for h in out["items"]:      # the same hearing as POST /hearings makes: its test request at once
        assert h["test_request"] is not None
        events = await ctl.events(h["id"])
        assert events[0]["kind"] == "hearing_scheduled" and events[0]["detail"]["by"] == "secretary-1"
    _, audit = await ctl.call("GET", f"{API}/audit?action=hearing.import", expect=200)
    rows = [a for a in audit["items"] if a["action"] == "hearing.import"]
    assert len(rows) == 1 and rows[0]["who"] == "secretary-1"
    assert sorted(rows[0]["detail"]["hearings"]) == sorted(h["id"] for h in out["items"])


ICAL = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//court//calendar//RU\r
BEGIN:VEVENT\r
UID:1@court\r
DTSTAMP:20261201T040000Z\r
SUMMARY:2-201/2026\r
LOCATION:Медеуский районный суд г. Алматы - Зал 1\r
DTSTART;TZID=Asia/Almaty:20261203T090000\r
DTEND;TZID=Asia/Almaty:20261203T100000\r
X-VKS-PARTICIPANTS:sizo-almaty-1\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:2@court\r
DTSTAMP:20261201T040000Z\r
SUMMARY:2-202/2026\r
LOCATION:{aqtobe}\r
DTSTART:20261203T090000\r
DURATION:PT40M\r
DESCRIPTION:Заседание по ВКС\\nparticipants: sizo-almaty-2\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:3@court\r
DTSTAMP:20261201T040000Z\r
SUMMARY:2-203/2026\r
LOCATION:Медеуский районный суд г. Алматы - Зал 2\r
DTSTART:20261203T070000Z\r
DURATION:PT30M\r
X-VKS-PARTICIPANTS:inst-karaganda-1\r
X-VKS-INITIATIVE:motion\r
END:VEVENT\r
END:VCALENDAR\r
"""


async def test_icalendar_with_tzid_floating_and_utc_times(ctl):
    aqtobe = await aqtobe_court(ctl)
    status, out = await post_file(ctl, ICAL.replace("{aqtobe}", str(aqtobe)), "text/calendar")
    assert status == 201, out
    got = {h["case_number"]: h for h in out["items"]}
    assert got["2-201/2026"]["start_utc"] == f"{DAY}T04:00:00Z" and got["2-201/2026"]["duration_min"] == 60
    # A floating DTSTART (no TZID, no Z) is the court's local time: 09:00 in Aqtobe.
    assert got["2-202/2026"]["start_utc"] == f"{DAY}T04:00:00Z" and got["2-202/2026"]["duration_min"] == 40
    assert [p["terminal_id"] for p in got["2-202/2026"]["participants"]] == ["sizo-almaty-2"]
    assert got["2-203/2026"]["start_utc"] == f"{DAY}T07:00:00Z" and got["2-203/2026"]["initiative"] == "motion"


async def test_a_multipart_upload_is_read_like_the_body(ctl):
    room = await ctl.room_id("almaty-medeu-district")
    form = aiohttp.FormData()
    form.add_field("file", f"case_number,room_id,start,participants\n2-301/2026,{room},{DAY} 10:00,sizo-almaty-1\n"
                   .encode(), filename="day.csv", content_type="text/csv")
    resp = await ctl.client.post(f"{API}/hearings/import", data=form,
                                 headers={"Authorization": f"Bearer {ctl.tokens['secretary']}"})
    out = await resp.json()
    assert resp.status == 201, out
    assert out["items"][0]["start_utc"] == f"{DAY}T05:00:00Z"


async def test_a_bad_row_lists_every_rows_errors_and_creates_nothing(ctl):
    room = await ctl.room_id("almaty-medeu-district")
    text = ("case_number,room_id,start,duration_min,participants\n"
            f"2-401/2026,{room},{DAY} 09:00,60,sizo-almaty-1\n"                 # fine on its own
            f"2-402/2026,{room},{DAY} 25:00,60,sizo-almaty-1\n"                 # no such time
            f",{room},{DAY} 12:00,60,no-such-terminal\n"                         # no case, no terminal
            f"2-404/2026,{room},{DAY} 09:30,60,sizo-almaty-2\n"                 # the room is booked by row 2
            f"2-405/2026,{room},{DAY} 14:00,many,sizo-almaty-1\n")
    before = await count_hearings(ctl)
    status, out = await post_file(ctl, text, "text/csv")
    assert status == 400, out
    assert out["error"] == "invalid" and "nothing was imported" in out["message"]
    by_row = {(e["row"], e["field"]) for e in out["errors"]}
    assert (3, "start") in by_row
    assert (4, "case_number") in by_row
    assert (5, "room_id") in by_row or (5, "start") in by_row       # the booked room, in words
    assert (6, "duration_min") in by_row
    assert not any(e["row"] == 2 for e in out["errors"])
    assert all(e["text"].startswith(f"row {e['row']}, {e['field']}: ") for e in out["errors"])
    assert await count_hearings(ctl) == before          # row 2 was valid: rolled back with the rest
    # The terminal is named once its case number is given.
    status, out = await post_file(ctl, f"case_number,room_id,start,participants\nX,{room},{DAY} 12:00,nope\n",
                                  "text/csv")
    assert status == 400 and out["errors"][0]["field"] == "participants" and "nope" in out["errors"][0]["message"]
    _, audit = await ctl.call("GET", f"{API}/audit", expect=200)
    assert not [a for a in audit["items"] if a["action"] == "hearing.import"]


async def test_a_row_out_of_scope_is_an_error_in_that_row(ctl):
    _, created = await ctl.call("POST", f"{API}/users", json={"name": "sec-kyzylorda", "role": "secretary",
                                                              "institutions": ["kyzylorda-district-2"]}, expect=201)
    tok = created["token"]
    mine = await ctl.room_id("kyzylorda-district-2")
    theirs = await ctl.room_id("almaty-medeu-district")
    text = ("case_number,room_id,start,participants\n"
            f"2-501/2026,{mine},{DAY} 09:00,sizo-kyzylorda-1\n"
            f"2-502/2026,{theirs},{DAY} 09:00,sizo-almaty-1\n")
    before = await count_hearings(ctl)
    status, out = await post_file(ctl, text, "text/csv", token=tok)
    assert status == 403, out
    assert [(e["row"], e["field"]) for e in out["errors"]] == [(3, "room_id")]
    assert "outside your scope" in out["errors"][0]["message"]
    assert await count_hearings(ctl) == before
    status, out = await post_file(ctl, "\n".join(text.splitlines()[:2]) + "\n", "text/csv", token=tok)
    assert status == 201 and out["items"][0]["start_utc"] == f"{DAY}T04:00:00Z"


@pytest.mark.parametrize("role", ["viewer", "technician", "coordinator"])
async def test_a_role_that_may_not_schedule_gets_403(ctl, role):
    room = await ctl.room_id("almaty-medeu-district")
    status, out = await post_file(ctl, f"case_number,room_id,start,participants\nA,{room},{DAY} 09:00,sizo-almaty-1\n",
                                  "text/csv", role=role)
    assert status == 403 and out["error"] == "forbidden"
    assert await count_hearings(ctl) == 0


@pytest.mark.parametrize(("body", "ctype", "says"), [
    ("", "text/csv", "empty"),
    ("case,room\n", "text/csv", "unknown column"),
    ("case_number,room_id,start\n", "text/csv", "no column 'participants'"),
    ("case_number,room_id,start,participants\n", "text/csv", "no hearing"),
    ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar", "no event"),
    ("not a calendar", "text/calendar", "not an iCalendar"),
    ("{}", "application/json", "text/csv, text/calendar"),
])
async def test_a_file_that_cannot_be_read_is_400_naming_the_file(ctl, body, ctype, says):
    status, out = await post_file(ctl, body, ctype)
    assert status == 400 and out["field"] == "file" and says in out["message"], out


async def test_two_rows_of_one_file_that_clash_are_refused_together(ctl):
    room = await ctl.room_id("almaty-medeu-district")
    text = ("case_number,room_id,start,duration_min,participants\n"
            f"2-601/2026,{room},{DAY} 09:00,60,sizo-almaty-1\n"
            f"2-602/2026,{room},{DAY} 09:30,60,sizo-almaty-2\n")
    status, out = await post_file(ctl, text, "text/csv")
    assert status == 400 and [e["row"] for e in out["errors"]] == [3]
    assert "booked by hearing" in out["errors"][0]["message"]
    assert await count_hearings(ctl) == 0
    # the ical side names its events
    ical = ICAL.replace("{aqtobe}", "99999")
    status, out = await post_file(ctl, ical, "text/calendar")
    assert status == 400 and [(e["event"], e["field"]) for e in out["errors"]] == [(2, "LOCATION")]
    assert out["errors"][0]["text"].startswith("event 2, LOCATION: ")


def test_a_start_is_the_courts_local_time_unless_it_carries_an_offset():
    from controller.hearing_import import parse_local
    assert parse_local("2026-12-03 09:00") == dt.datetime(2026, 12, 3, 9, 0)
    assert parse_local("2026-12-03T09:00+06:00").utcoffset() == dt.timedelta(hours=6)
    with pytest.raises(ValueError, match="not a date and time"):
        parse_local("03.12.2026 9:00")


@pytest.mark.parametrize(("body", "ctype"), [
    # The fuzzer's find: a form part whose header holds a control character (was a 500).
    (b'--XX\r\nContent-Disposition: form-data; name="\x18"\r\n\r\n1\r\n--XX--\r\n', "multipart/form-data; boundary=XX"),
    (b"case_number,room_id,start,participants\nA\x00,1,2026-12-03 09:00,x\n", "text/csv"),
    (b"\xff\xfe not utf-8", "text/csv"),
    (b'case_number,room_id,start,participants\n"A,1\n', "text/csv"),
])
async def test_a_malformed_upload_is_400_not_500(ctl, body, ctype):
    resp = await ctl.client.post(f"{API}/hearings/import", data=body,
                                 headers={"Authorization": f"Bearer {ctl.tokens['secretary']}", "Content-Type": ctype})
    out = await resp.json()
    assert resp.status == 400 and out["field"] == "file", out


async def test_an_events_unknown_zone_or_missing_time_is_an_error_in_that_event(ctl):
    ical = ICAL.replace("DTSTART;TZID=Asia/Almaty:20261203T090000", "DTSTART;TZID=Mars/Olympus:20261203T090000") \
        .replace("DTSTART:20261203T070000Z", "DTSTART;VALUE=DATE:20261203")
    status, out = await post_file(ctl, ical.replace("{aqtobe}", str(await ctl.room_id("almaty-medeu-district"))),
                                  "text/calendar")
    assert status == 400, out
    got = {(e["event"], e["field"]): e["message"] for e in out["errors"]}
    assert "unknown time zone 'Mars/Olympus'" in got[(1, "DTSTART")]
    assert "without a time of day" in got[(3, "DTSTART")]
    assert (2, "DTSTART") not in got
    assert await count_hearings(ctl) == 0


@pytest.mark.parametrize("text", ["BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                                  "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDURATION:soon\r\nEND:VEVENT\r\n",
                                  "BEGIN:VCALENDAR\r\n\x01\r\nEND:VCALENDAR", "BEGIN:VEVENT\r\nEND:VCALENDAR\r\n"])
async def test_a_broken_calendar_is_400_not_500(ctl, text):
    status, out = await post_file(ctl, text, "text/calendar")
    assert status == 400, out


async def test_a_room_number_beyond_the_ids_is_an_error_in_that_row(ctl):
    text = f"case_number,room_id,start,participants\nA,3935847014750126,{DAY} 09:00,sizo-almaty-1\n"
    status, out = await post_file(ctl, text, "text/csv")
    assert status == 400 and [(e["row"], e["field"]) for e in out["errors"]] == [(2, "room_id")], out
