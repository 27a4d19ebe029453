"""0003: live monitoring during a hearing (rule 22) - the flow's state per hearing, the breaks,
and the per-second intervals the monitoring sessions report.

Written out in full so that this revision never changes once released
(controller.store.live declares the same tables for the code).

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _json():
    from sqlalchemy.dialects.postgresql import JSONB
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('live_state',
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=True),
    sa.Column('callee', sa.String(length=64), nullable=True),
    sa.Column('session_id', sa.String(length=128), nullable=True),
    sa.Column('session_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('break_id', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('next_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detector', _json(), nullable=True),
    sa.Column('stats', _json(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_live_state_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hearing_id', name=op.f('pk_live_state')),
    sa.CheckConstraint("state IN ('monitoring', 'break', 'reconnecting', 'ready_to_resume', 'escalated', "
                       "'stopped', 'ended')", name=op.f('ck_live_state_state')),
    )
    op.create_index('ix_live_state_session_id', 'live_state', ['session_id'], unique=False)
    op.create_table('live_breaks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('cause', sa.String(length=32), nullable=False),
    sa.Column('evidence', _json(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_by', sa.Text(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=24), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_live_breaks_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_breaks')),
    )
    op.create_index('ix_live_breaks_hearing_id', 'live_breaks', ['hearing_id', 'id'], unique=False)
    op.create_table('live_intervals',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.Column('t', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('inbound', _json(), nullable=True),
    sa.Column('outbound', _json(), nullable=True),
    sa.Column('rtt_ms', sa.Float(), nullable=True),
    sa.Column('stalled', sa.Boolean(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'],
                            name=op.f('fk_live_intervals_hearing_id_hearings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_live_intervals')),
    sa.UniqueConstraint('session_id', 'terminal_id', 't', name='uq_live_intervals_session_terminal_t'),
    )
    op.create_index('ix_live_intervals_hearing_at', 'live_intervals', ['hearing_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_live_intervals_hearing_at', table_name='live_intervals')
    op.drop_table('live_intervals')
    op.drop_index('ix_live_breaks_hearing_id', table_name='live_breaks')
    op.drop_table('live_breaks')
    op.drop_index('ix_live_state_session_id', table_name='live_state')
    op.drop_table('live_state')
