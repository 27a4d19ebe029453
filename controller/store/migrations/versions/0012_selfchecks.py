"""0012: self-checks of mobile participants (issue 14): a link per person with its secret's hash,
its expiry and what the check found (controller.store.selfchecks declares the same table).

Written out in full so that this revision never changes once released.

Revision ID: 0012_selfchecks
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0012_selfchecks"
down_revision = "0011_live_participants"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
DEVICE = "IN ('ok', 'denied', 'missing', 'black', 'frozen', 'silent', 'error')"   # contract.vocab.DeviceStatus


def upgrade() -> None:
    op.create_table('self_checks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verdict', sa.String(length=16), nullable=True),
    sa.Column('camera', sa.String(length=16), nullable=True),
    sa.Column('microphone', sa.String(length=16), nullable=True),
    sa.Column('rtt_ms', sa.Float(), nullable=True),
    sa.Column('inbound', JSON, nullable=True),
    sa.Column('outbound', JSON, nullable=True),
    sa.Column('browser', sa.Text(), nullable=True),
    sa.Column('path_type', sa.String(length=8), nullable=True),
    sa.Column('reason_codes', JSON, nullable=True),
    sa.CheckConstraint("mode IN ('vks', 'mobile', 'in_person')", name=op.f('ck_self_checks_mode')),
    sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed', 'expired')",
                       name=op.f('ck_self_checks_status')),
    sa.CheckConstraint("camera " + DEVICE, name=op.f('ck_self_checks_camera')),
    sa.CheckConstraint("microphone " + DEVICE, name=op.f('ck_self_checks_microphone')),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_self_checks_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_self_checks')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_self_checks_secret_hash'))
    )
    op.create_index('ix_self_checks_hearing_id', 'self_checks', ['hearing_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_self_checks_hearing_id', table_name='self_checks')
    op.drop_table('self_checks')
