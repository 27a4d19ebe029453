"""0009: the history of every check and test (issue 12): one row per result, the worse direction's
figures, kept for `history.keep_days` (controller.store.history declares the same table).

Written out in full so that this revision never changes once released.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KINDS = "kind IN ('test', 'preconnect', 'adhoc', 'nightly')"


def upgrade() -> None:
    op.create_table('measurements',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('check_id', sa.Integer(), nullable=True),
    sa.Column('test_id', sa.String(length=128), nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.Column('loss_ratio', sa.Float(), nullable=True),
    sa.Column('jitter_ms', sa.Float(), nullable=True),
    sa.Column('rtt_ms', sa.Float(), nullable=True),
    sa.Column('capacity_kbps', sa.Float(), nullable=True),
    sa.CheckConstraint(KINDS, name=op.f('ck_measurements_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measurements')),
    sa.UniqueConstraint('test_id', name=op.f('uq_measurements_test_id'))
    )
    op.create_index('ix_measurements_caller_at', 'measurements', ['caller', 'at'], unique=False)
    op.create_index('ix_measurements_callee_at', 'measurements', ['callee', 'at'], unique=False)
    op.create_index('ix_measurements_at', 'measurements', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_measurements_at', table_name='measurements')
    op.drop_index('ix_measurements_callee_at', table_name='measurements')
    op.drop_index('ix_measurements_caller_at', table_name='measurements')
    op.drop_table('measurements')
