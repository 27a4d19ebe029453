"""Persistence (SQLAlchemy 2 Core, async): SQLite (WAL) by default, PostgreSQL
in production; one code path and one set of migrations for both.

Public API (all repository functions take an open `AsyncConnection` first, so
the caller decides the transaction - one per API request or job step):

- `db.Database(url)`: engine for `sqlite:///path` or `postgresql://...`;
  `async with db.transaction() as conn` (write), `async with db.read() as conn`.
  `db.to_async_url(url)`, `db.DatabaseUrlError`, `db.utcnow()`.
- `migrate.migrate(db)`: alembic upgrade to head (revision 0001 is here; later
  revisions chain on it, e.g. 0002 for the agent-side tables with
  `down_revision = "0001"`). Tables of other modules may be declared on
  `schema.metadata` so that `schema.metadata` stays the whole schema.
- `schema`: the tables and the enumerations (CHECK constraints).
- `registry`: institutions, rooms, terminals - `get_terminal(conn, id)`,
  `list_terminals(conn, ...)`, `terminals_by_ids`, `import_sites(conn, data)`, CRUD.
- `hearings`: hearings and participants, the booking-overlap check, the
  hearing view (`hearing_view`) used by the API and the exports.
- `checks`: test requests and pre-connect checks - `get_check`,
  `check_by_session(conn, session_id)`, updates.
- `events`: the append-only event record per hearing - `append`, `list_for`.
- `suspensions`: rule 24 - create, lift, `active_for(conn, institution_ids, at)`.
- `users`: users, API tokens (stored as sha256), the audit trail.
- `jobs`: the scheduler's durable jobs - `enqueue`, `claim`, `finish`,
  `retry_later`, `cancel_for`.

Errors: `errors.NotFound`, `errors.Conflict`, `errors.Invalid` (field named).
"""
