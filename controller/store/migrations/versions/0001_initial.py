"""0001: registry, hearings, checks, events, suspensions, users, tokens, audit, jobs.

Written out in full (not created from the live metadata) so that this revision
never changes once released. Timestamps are `timestamptz` on PostgreSQL and
UTC text on SQLite (see controller.store.schema.UTCDateTime).

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('who', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('detail', JSONType, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit'))
    )
    op.create_table('institutions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('region', sa.Text(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'court' AND level IN ('district', 'regional', 'supreme')) OR (kind <> 'court' AND level IS NULL)", name=op.f('ck_institutions_level')),
    sa.CheckConstraint("kind IN ('court', 'sizo', 'correctional')", name=op.f('ck_institutions_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_institutions'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('payload', JSONType, nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('locked_by', sa.Text(), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'running', 'done', 'failed', 'cancelled')", name=op.f('ck_jobs_state')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('key', name=op.f('uq_jobs_key'))
    )
    op.create_index('ix_jobs_state_due_at', 'jobs', ['state', 'due_at'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'coordinator', 'secretary', 'technician', 'viewer')", name=op.f('ck_users_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('name', name=op.f('uq_users_name'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_api_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_api_tokens_token_sha256'))
    )
    op.create_table('rooms',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_rooms_institution_id_institutions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rooms')),
    sa.UniqueConstraint('institution_id', 'name', name='uq_rooms_institution_name')
    )
    op.create_table('suspensions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=True),
    sa.Column('region', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('from_utc', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until_utc', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Text(), nullable=True),
    sa.Column('lifted_by', sa.Text(), nullable=True),
    sa.CheckConstraint("reason IN ('riot', 'group_disobedience', 'escape', 'hostage_taking', 'natural_disaster', 'state_of_emergency', 'special_regime', 'martial_law')", name=op.f('ck_suspensions_reason')),
    sa.CheckConstraint('(institution_id IS NULL) <> (region IS NULL)', name=op.f('ck_suspensions_target')),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_suspensions_institution_id_institutions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suspensions'))
    )
    op.create_table('terminals',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.CheckConstraint("role IN ('courtroom', 'institution')", name=op.f('ck_terminals_role')),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_terminals_institution_id_institutions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_terminals_room_id_rooms'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_terminals'))
    )
    op.create_table('hearings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('case_number', sa.Text(), nullable=False),
    sa.Column('court_id', sa.String(length=64), nullable=False),
    sa.Column('room_id', sa.Integer(), nullable=False),
    sa.Column('court_terminal_id', sa.String(length=64), nullable=False),
    sa.Column('start_utc', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_utc', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_min', sa.Integer(), nullable=False),
    sa.Column('initiative', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('agreement_coordinator', sa.String(length=16), nullable=False),
    sa.Column('agreement_state', sa.String(length=16), nullable=False),
    sa.Column('agreement_by', sa.Text(), nullable=True),
    sa.Column('agreement_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=True),
    sa.CheckConstraint("agreement_coordinator IN ('regional', 'department')", name=op.f('ck_hearings_agreement_coordinator')),
    sa.CheckConstraint("agreement_state IN ('pending', 'given')", name=op.f('ck_hearings_agreement_state')),
    sa.CheckConstraint("initiative IN ('court', 'motion')", name=op.f('ck_hearings_initiative')),
    sa.CheckConstraint("status IN ('scheduled', 'in_progress', 'held', 'postponed', 'cancelled')", name=op.f('ck_hearings_status')),
    sa.CheckConstraint("verdict IN ('unknown', 'good', 'degraded', 'unusable', 'suspended')", name=op.f('ck_hearings_verdict')),
    sa.CheckConstraint('duration_min > 0', name=op.f('ck_hearings_duration')),
    sa.ForeignKeyConstraint(['court_id'], ['institutions.id'], name=op.f('fk_hearings_court_id_institutions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['court_terminal_id'], ['terminals.id'], name=op.f('fk_hearings_court_terminal_id_terminals'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['room_id'], ['rooms.id'], name=op.f('fk_hearings_room_id_rooms'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hearings'))
    )
    op.create_index('ix_hearings_room_id', 'hearings', ['room_id'], unique=False)
    op.create_index('ix_hearings_start_utc', 'hearings', ['start_utc'], unique=False)
    op.create_table('checks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.DateTime(timezone=True), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', JSONType, nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("kind IN ('test', 'preconnect')", name=op.f('ck_checks_kind')),
    sa.CheckConstraint("status IN ('pending', 'scheduled', 'running', 'passed', 'failed', 'overdue', 'blocked', 'cancelled')", name=op.f('ck_checks_status')),
    sa.ForeignKeyConstraint(['callee'], ['terminals.id'], name=op.f('fk_checks_callee_terminals'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['caller'], ['terminals.id'], name=op.f('fk_checks_caller_terminals'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_checks_hearing_id_hearings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checks')),
    sa.UniqueConstraint('hearing_id', 'kind', 'callee', name='uq_checks_hearing_kind_callee'),
    sa.UniqueConstraint('session_id', name=op.f('uq_checks_session_id'))
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('detail', JSONType, nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_events_hearing_id_hearings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    op.create_index('ix_events_hearing_id', 'events', ['hearing_id', 'id'], unique=False)
    op.create_table('hearing_participants',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_hearing_participants_hearing_id_hearings'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_hearing_participants_institution_id_institutions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'], name=op.f('fk_hearing_participants_terminal_id_terminals'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hearing_participants')),
    sa.UniqueConstraint('hearing_id', 'terminal_id', name='uq_hearing_participants_terminal')
    )
    op.create_index('ix_hearing_participants_terminal_id', 'hearing_participants', ['terminal_id'], unique=False)


def downgrade() -> None:
    op.drop_table('hearing_participants')
    op.drop_table('events')
    op.drop_table('checks')
    op.drop_table('hearings')
    op.drop_table('terminals')
    op.drop_table('suspensions')
    op.drop_table('rooms')
    op.drop_table('api_tokens')
    op.drop_table('users')
    op.drop_table('jobs')
    op.drop_table('institutions')
    op.drop_table('audit')
