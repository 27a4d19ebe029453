"""0008: which side (issue 12, part 2) - an institution may be a data centre (its terminals are the
references each side of a degraded pair is tested against), and the diagnoses with their findings.

Written out in full so that this revision never changes once released
(controller.store.diagnoses declares the same table for the code).

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KINDS_0001 = "kind IN ('court', 'sizo', 'correctional')"
KINDS_0008 = "kind IN ('court', 'sizo', 'correctional', 'datacentre')"
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table('institutions') as b:
        b.drop_constraint(op.f('ck_institutions_kind'), type_='check')
        b.create_check_constraint(op.f('ck_institutions_kind'), KINDS_0008)
    op.create_table('diagnoses',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('subject', sa.String(length=80), nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=True),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('session_a', sa.String(length=64), nullable=True),
    sa.Column('session_b', sa.String(length=64), nullable=True),
    sa.Column('pair', JSON, nullable=False),
    sa.Column('sides', JSON, nullable=True),
    sa.Column('finding', JSON, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('running', 'done')", name=op.f('ck_diagnoses_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_diagnoses')),
    sa.UniqueConstraint('subject', name=op.f('uq_diagnoses_subject'))
    )
    op.create_index('ix_diagnoses_hearing_id', 'diagnoses', ['hearing_id'], unique=False)
    op.create_index('ix_diagnoses_session_a', 'diagnoses', ['session_a'], unique=False)
    op.create_index('ix_diagnoses_session_b', 'diagnoses', ['session_b'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_diagnoses_session_b', table_name='diagnoses')
    op.drop_index('ix_diagnoses_session_a', table_name='diagnoses')
    op.drop_index('ix_diagnoses_hearing_id', table_name='diagnoses')
    op.drop_table('diagnoses')
    op.execute("DELETE FROM terminals WHERE institution_id IN (SELECT id FROM institutions WHERE kind = 'datacentre')")
    op.execute("DELETE FROM rooms WHERE institution_id IN (SELECT id FROM institutions WHERE kind = 'datacentre')")
    op.execute("DELETE FROM institutions WHERE kind = 'datacentre'")
    with op.batch_alter_table('institutions') as b:
        b.drop_constraint(op.f('ck_institutions_kind'), type_='check')
        b.create_check_constraint(op.f('ck_institutions_kind'), KINDS_0001)
