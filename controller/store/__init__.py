"""Persistence (SQLAlchemy 2 Core, async): SQLite (WAL) by default, PostgreSQL
in production; one code path and one set of migrations for both.

Public API (all repository functions take an open `AsyncConnection` first, so
the caller decides the transaction - one per API request or job step):

- `db.Database(url)`: engine for `sqlite:///path` or `postgresql://...`;
  `async with db.transaction() as conn` (write), `async with db.read() as conn`.
  `db.to_async_url(url)`, `db.DatabaseUrlError`, `db.utcnow()`.
- `migrate.migrate(db)`: alembic upgrade to head (revision 0001 is here; later
  revisions chain on it, e.g. 0002 for the agent-side tables with
  `down_revision = "0001"`).
- `schema`: every table, read in one place; its CHECK constraints take their
  words from `contract.vocab` (a test compares it with the migrated database).
- `registry`: institutions, rooms, terminals - `get_terminal(conn, id)`,
  `find_terminal`, `list_terminals(conn, ...)`, `terminals_by_ids`, `import_sites(conn, data, now)`, CRUD.
- `hearings`: hearings and participants (`replace_participants`), the
  booking-overlap check (`lock_resources`, `booking_conflicts`), the hearings
  a suspension affects, and the hearing view (`views(conn, ids, now)`) - the
  JSON the API and the exports give.
- `checks`: test requests and pre-connect checks - `get_check`,
  `check_by_session(conn, session_id)`, `checks_for`, `update_check`,
  `last_finished(conn, terminal_ids)`.
- `events`: the append-only event record per hearing - `append`, `list_for`.
- `suspensions`: rule 24 - `create`, `get`, `list_all`, `lift`, `not_ended(conn, at)`.
- `users`: users, API tokens (stored as sha256), the audit trail.
- `jobs`: the scheduler's durable jobs - `enqueue`, `claim`, `finish`,
  `retry_later`, `fail`, `cancel`, `release`, `prune`.
- `agents` (the agent side, migration 0002): terminal tokens, presence,
  reports, sessions, relay queue.
- `live` (migration 0003): the live flow's state, breaks and intervals (rule 22).
- `escalations`, `acts` (migration 0004): escalations, contacts and
  notifications (rules 16, 17); acts of technical impossibility (rule 18).
- `history` (migration 0009, issue 12): every check's and test's result (`measurements`, declared
  there), the daily figures of a terminal or a pair, the prune, the last result per pair.

- `selfchecks` (migration 0012, issue 14): the self-check links of mobile participants and their
  results (`self_checks`, declared there, on `schema.metadata` too).
- `modes` (migration 0010, issue 13): each party's way of taking part (rules 21, 23), its table on
  `schema.metadata` too.
- `diagnoses` (migration 0008): each side of a degraded pair tested against the reference
  terminal, and the finding (issue 12); its table is on `schema.metadata` too.

Locking (PostgreSQL): writers lock rows in one order - hearing, then check,
then job rows - so that concurrent requests, job handlers and result
deliveries never deadlock. Bookings lock the room and terminal rows first.

Errors: `controller.errors.NotFound`, `Conflict`, `Invalid` (field named).
"""

# The tables declared outside the schema module join its metadata when the package loads.
from controller.store import diagnoses as _diagnoses  # noqa: E402,F401
from controller.store import live_participants as _live_participants  # noqa: E402,F401
from controller.store import modes as _modes  # noqa: E402,F401
from controller.store import selfchecks as _selfchecks  # noqa: E402,F401
