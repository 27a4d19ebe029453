"""A day's hearings from a file (issue 13): CSV or iCalendar parsed into rows, each naming where it
came from (the CSV line, the calendar's n-th VEVENT), with the problems found in words. Pure: no
database; controller.api.hearing_import resolves the rooms and time zones and schedules each row
with controller.hearings.schedule inside one transaction. The columns and the calendar's mapping are
documented in docs/import.md.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field

CSV_COLUMNS = ("case_number", "room_id", "court", "room", "start", "duration_min", "participants", "initiative")
REQUIRED = ("case_number", "start", "participants")
MAX_ROWS = 500
# The calendar's property that lists the remote terminals, and the DESCRIPTION line that may instead.
ICAL_PARTICIPANTS = "X-VKS-PARTICIPANTS"
ICAL_INITIATIVE = "X-VKS-INITIATIVE"
_DESC_LINE = re.compile(r"^\s*(?:participants|terminals)\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_LOCAL_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


class FileInvalid(Exception):
    """The file as a whole cannot be read (not CSV, no header, no event, too many rows)."""


@dataclass
class RowError:
    """What is wrong with one row: `unit` row (a CSV line, the header being line 1) or event (the
    calendar's n-th VEVENT), the field (the column or property) and the problem in words."""

    unit: str
    n: int
    field: str
    message: str

    def out(self) -> dict:
        return {self.unit: self.n, "field": self.field, "message": self.message,
                "text": f"{self.unit} {self.n}, {self.field}: {self.message}"}


@dataclass
class Row:
    """One hearing to schedule as the file gives it. `start` is naive when the file gives the court's
    local time (converted with the court's zone), aware otherwise. `room_id` or (`court`, `room`) or
    `location` ("<court name> - <room name>", a room id, or a room name unique among the courts)."""

    unit: str
    n: int
    case_number: str = ""
    room_id: int | None = None
    court: str | None = None
    room: str | None = None
    location: str | None = None
    start: dt.datetime | None = None
    duration_min: int | None = None
    end: dt.datetime | None = None
    participants: list[str] = field(default_factory=list)
    initiative: str | None = None
    errors: list[RowError] = field(default_factory=list)

    def error(self, where: str, message: str) -> None:
        self.errors.append(RowError(self.unit, self.n, where, message))

    @property
    def room_field(self) -> str:
        """The column or property that names the room (what a room error points at)."""
        if self.unit == "event":
            return "LOCATION"
        return "room_id" if self.room_id is not None else "room"


def split_terminals(text: str) -> list[str]:
    """Terminal ids separated by ';' (or ','), blanks dropped."""
    return [p.strip() for p in re.split(r"[;,]", text) if p.strip()]


def parse_local(text: str) -> dt.datetime:
    """A start as written: ISO-8601 with an offset (aware), or the court's local time (naive)."""
    text = text.strip()
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _LOCAL_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date and time (YYYY-MM-DD HH:MM, the court's local time)")


def _text(raw: bytes | str) -> str:
    """The file as text: UTF-8 (a byte-order mark dropped), no NUL (no database column holds it)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FileInvalid("the file is not UTF-8 text") from None
    if "\x00" in raw:
        raise FileInvalid("the file holds NUL characters: not a text file")
    return raw


def parse_csv(raw: bytes | str) -> list[Row]:
    """The rows of a CSV file (comma-separated, a header line naming the columns of CSV_COLUMNS)."""
    text = _text(raw).lstrip("\ufeff")
    try:
        return _csv_rows(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise FileInvalid(f"not a CSV file: {exc}") from None


def _csv_rows(reader: csv.DictReader) -> list[Row]:
    header = [h.strip().lower() for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise FileInvalid("the file is empty: the first line names the columns (docs/import.md)")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise FileInvalid(f"unknown column {unknown[0]!r}; the columns are {', '.join(CSV_COLUMNS)}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileInvalid(f"no column {missing[0]!r}; needed: {', '.join(REQUIRED)}")
    if "room_id" not in header and not {"court", "room"} <= set(header):
        raise FileInvalid("no room: give the column room_id, or the columns court and room")
    reader.fieldnames = header
    rows: list[Row] = []
    for rec in reader:
        if not any((v or "").strip() for k, v in rec.items() if k is not None):
            continue                                     # a blank line
        row = Row("row", reader.line_num)
        if None in rec:
            row.error("row", f"more values than the {len(header)} columns")
        rows.append(_csv_row(row, {k: (v or "").strip() for k, v in rec.items() if k is not None}))
        if len(rows) > MAX_ROWS:
            raise FileInvalid(f"more than {MAX_ROWS} hearings in one file")
    if not rows:
        raise FileInvalid("the file has no hearing: one line per hearing after the header")
    return rows


def _csv_row(row: Row, rec: dict[str, str]) -> Row:
    row.case_number = rec.get("case_number", "")
    if not row.case_number:
        row.error("case_number", "empty")
    if rec.get("room_id"):
        try:
            row.room_id = int(rec["room_id"])
        except ValueError:
            row.error("room_id", f"{rec['room_id']!r} is not a room number")
    elif rec.get("court") and rec.get("room"):
        row.court, row.room = rec["court"], rec["room"]
    else:
        row.error("room", "no room: give room_id, or court and room")
    if not rec.get("start"):
        row.error("start", "empty")
    else:
        try:
            row.start = parse_local(rec["start"])
        except ValueError as exc:
            row.error("start", str(exc))
    if rec.get("duration_min"):
        try:
            row.duration_min = int(rec["duration_min"])
        except ValueError:
            row.error("duration_min", f"{rec['duration_min']!r} is not a whole number of minutes")
    row.participants = split_terminals(rec.get("participants", ""))
    if not row.participants:
        row.error("participants", "no remote terminal: terminal ids separated by ';'")
    row.initiative = rec.get("initiative") or None
    return row


def parse_ical(raw: bytes | str) -> list[Row]:
    """The hearings of an iCalendar file: one per VEVENT (docs/import.md)."""
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(_text(raw))
    except ValueError as exc:
        raise FileInvalid(f"not an iCalendar file: {exc}") from None
    events = list(cal.walk("VEVENT"))
    if not events:
        raise FileInvalid("the calendar has no event (VEVENT)")
    if len(events) > MAX_ROWS:
        raise FileInvalid(f"more than {MAX_ROWS} hearings in one file")
    return [_ical_row(Row("event", n), ev) for n, ev in enumerate(events, 1)]


def _decoded(prop) -> object:
    """A property's value (None when the library could not parse it: its InvalidCalendar is a ValueError)."""
    try:
        return getattr(prop, "dt", None)
    except ValueError:
        return None


def _ical_time(row: Row, ev, name: str) -> dt.datetime | None:
    """The event's date-time property `name` (None when absent; an error noted when unusable): aware
    with its TZID or Z, naive when floating (the court's local time)."""
    prop = ev.get(name)
    if prop is None:
        return None
    if isinstance(prop, list):
        row.error(name, "given more than once")
        return None
    value = _decoded(prop)
    if not isinstance(value, dt.datetime):
        row.error(name, "a date without a time of day" if isinstance(value, dt.date) else "not a date and time")
        return None
    tzid = prop.params.get("TZID")
    if tzid and value.tzinfo is None:
        row.error(name, f"unknown time zone {tzid!r}: an IANA name such as Asia/Almaty")
        return None
    return value


def _ical_row(row: Row, ev) -> Row:
    row.case_number = str(ev.get("SUMMARY", "")).strip()
    if not row.case_number:
        row.error("SUMMARY", "empty: the case number")
    row.location = str(ev.get("LOCATION", "")).strip() or None
    if row.location is None:
        row.error("LOCATION", "empty: the courtroom (\"<court name> - <room name>\" or the room's number)")
    start = row.start = _ical_time(row, ev, "DTSTART")
    if start is None and "DTSTART" not in ev:
        row.error("DTSTART", "missing")
    if "DURATION" in ev:
        dur = _decoded(ev["DURATION"])
        if isinstance(dur, dt.timedelta):
            row.duration_min = int(dur.total_seconds() // 60)
        else:
            row.error("DURATION", "not a duration (e.g. PT1H30M)")
    else:
        row.end = _ical_time(row, ev, "DTEND")
    if start is not None and row.end is not None:
        if (start.tzinfo is None) != (row.end.tzinfo is None):
            row.error("DTEND", "DTSTART and DTEND must both be local or both carry a zone")
        else:
            row.duration_min = int((row.end - start).total_seconds() // 60)
    listed = str(ev.get(ICAL_PARTICIPANTS, "")).strip()
    if not listed:
        found = _DESC_LINE.search(str(ev.get("DESCRIPTION", "")))
        listed = found.group(1) if found else ""
    row.participants = split_terminals(listed)
    if not row.participants:
        row.error(ICAL_PARTICIPANTS, f"no remote terminal: {ICAL_PARTICIPANTS}:t1;t2 or a DESCRIPTION line "
                                     "\"participants: t1; t2\"")
    row.initiative = str(ev.get(ICAL_INITIATIVE, "")).strip() or None
    return row


CSV_TYPES = ("text/csv", "application/csv")
ICAL_TYPES = ("text/calendar",)


def kind_of(content_type: str, filename: str | None, text: bytes | str) -> str:
    """csv or ical: from the content type, else the file's name, else its first line."""
    if content_type in CSV_TYPES:
        return "csv"
    if content_type in ICAL_TYPES:
        return "ical"
    name = (filename or "").lower()
    if name.endswith(".ics"):
        return "ical"
    if name.endswith(".csv"):
        return "csv"
    head = (text[:64].decode("utf-8", "replace") if isinstance(text, bytes) else text[:64]).lstrip("\ufeff ")
    return "ical" if head.upper().startswith("BEGIN:VCALENDAR") else "csv"


def parse(kind: str, raw: bytes | str) -> list[Row]:
    """The rows of a file of `kind` (csv or ical)."""
    return parse_ical(raw) if kind == "ical" else parse_csv(raw)
