"""0011: every remote participant monitored, and the judge's decision on a recommended break
(issue 13, rule 22): `live_participants` (the flows of the participants after the first),
`live_decisions` (declared | continued, per break) and `live_intervals.callee` (whose link a
second is of). controller.store.live_participants declares the
same tables.

Written out in full so that this revision never changes once released.

Revision ID: 0011_live_participants
Revises: 0009 (the merger re-chains it after the other helpers' revisions)
"""
from alembic import op
import sqlalchemy as sa


revision = "0011_live_participants"
down_revision = "0010_modes"
branch_labels = None
depends_on = None


def _json():
    from sqlalchemy.dialects.postgresql import JSONB
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('live_participants',
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
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
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_live_participants_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hearing_id', 'terminal_id', name=op.f('pk_live_participants')),
    )
    op.create_index('ix_live_participants_session_id', 'live_participants', ['session_id'], unique=False)
    op.create_table('live_decisions',
    sa.Column('break_id', sa.Integer(), nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['break_id'], ['live_breaks.id'], name=op.f('fk_live_decisions_break_id_live_breaks'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_live_decisions_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('break_id', name=op.f('pk_live_decisions')),
    )
    op.create_index('ix_live_decisions_hearing_id', 'live_decisions', ['hearing_id'], unique=False)
    with op.batch_alter_table('live_intervals') as batch:
        batch.add_column(sa.Column('callee', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('live_intervals') as batch:
        batch.drop_column('callee')
    op.drop_index('ix_live_decisions_hearing_id', table_name='live_decisions')
    op.drop_table('live_decisions')
    op.drop_index('ix_live_participants_session_id', table_name='live_participants')
    op.drop_table('live_participants')
