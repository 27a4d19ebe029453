"""0010: each party's way of taking part in a hearing (issue 13, rules 21, 23: controller.store.modes
declares the same table), and contacts of a third kind - the coordinator of a court's hearings, told
when an agreement is needed or reset (rules 11, 12).

Written out in full so that this revision never changes once released.

Revision ID: 0010_modes
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = "0010_modes"
down_revision = "0009"
branch_labels = None
depends_on = None

MODES = "mode IN ('vks', 'mobile', 'in_person')"
CONTACT_KINDS_0004 = "kind IN ('technician', 'organiser')"
CONTACT_KINDS_0010 = "kind IN ('technician', 'organiser', 'coordinator')"


def upgrade() -> None:
    op.create_table('participation_modes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('party_kind', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('occasion', sa.String(length=16), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.Text(), nullable=False),
    sa.CheckConstraint(MODES, name=op.f('ck_participation_modes_mode')),
    sa.CheckConstraint('terminal_id IS NOT NULL OR name IS NOT NULL', name=op.f('ck_participation_modes_party')),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_participation_modes_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participation_modes'))
    )
    op.create_index('ix_participation_modes_hearing_id', 'participation_modes', ['hearing_id'], unique=False)
    with op.batch_alter_table('contacts') as b:
        b.drop_constraint(op.f('ck_contacts_kind'), type_='check')
        b.create_check_constraint(op.f('ck_contacts_kind'), CONTACT_KINDS_0010)


def downgrade() -> None:
    op.execute("DELETE FROM contacts WHERE kind = 'coordinator'")
    with op.batch_alter_table('contacts') as b:
        b.drop_constraint(op.f('ck_contacts_kind'), type_='check')
        b.create_check_constraint(op.f('ck_contacts_kind'), CONTACT_KINDS_0004)
    op.drop_index('ix_participation_modes_hearing_id', table_name='participation_modes')
    op.drop_table('participation_modes')
