"""0004: escalation (rules 16, 17) - contacts per institution, escalations, their
actions and notifications - and the acts of technical impossibility (rule 18)
with their signatures.

Written out in full so that this revision never changes once released
(controller.store.escalations and controller.store.acts declare the same
tables for the code).

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json():
    from sqlalchemy.dialects.postgresql import JSONB
    return sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table('contacts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('email', sa.Text(), nullable=True),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('technician', 'organiser')", name=op.f('ck_contacts_kind')),
    sa.CheckConstraint('email IS NOT NULL OR webhook_url IS NOT NULL OR user_id IS NOT NULL',
                       name=op.f('ck_contacts_reachable')),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'],
                            name=op.f('fk_contacts_institution_id_institutions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_contacts_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts')),
    )
    op.create_index('ix_contacts_institution_id', 'contacts', ['institution_id'], unique=False)
    op.create_table('escalations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('cause', sa.String(length=32), nullable=False),
    sa.Column('detail', _json(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('open_key', sa.String(length=128), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('step2_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('step2_reason', sa.String(length=16), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.Text(), nullable=True),
    sa.Column('cannot_fix_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cannot_fix_by', sa.Text(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('open', 'acknowledged', 'cannot_fix', 'resolved')",
                       name=op.f('ck_escalations_state')),
    sa.CheckConstraint('step IN (1, 2)', name=op.f('ck_escalations_step')),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_escalations_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalations')),
    sa.UniqueConstraint('open_key', name=op.f('uq_escalations_open_key')),
    )
    op.create_index('ix_escalations_hearing_id', 'escalations', ['hearing_id'], unique=False)
    op.create_index('ix_escalations_state', 'escalations', ['state'], unique=False)
    op.create_table('escalation_actions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('escalation_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('by', sa.Text(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("action IN ('opened', 'step2', 'ack', 'cannot_fix', 'resolved')",
                       name=op.f('ck_escalation_actions_action')),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'],
                            name=op.f('fk_escalation_actions_escalation_id_escalations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_escalation_actions')),
    )
    op.create_index('ix_escalation_actions_escalation_id', 'escalation_actions', ['escalation_id', 'id'],
                    unique=False)
    op.create_table('notifications',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('escalation_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("channel IN ('webhook', 'email')", name=op.f('ck_notifications_channel')),
    sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f('ck_notifications_state')),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'],
                            name=op.f('fk_notifications_escalation_id_escalations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    )
    op.create_index('ix_notifications_escalation_id', 'notifications', ['escalation_id'], unique=False)
    op.create_table('acts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hearing_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('content', _json(), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('final_sha256', sa.String(length=64), nullable=True),
    sa.Column('documents', _json(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'final')", name=op.f('ck_acts_status')),
    sa.ForeignKeyConstraint(['hearing_id'], ['hearings.id'], name=op.f('fk_acts_hearing_id_hearings'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acts')),
    sa.UniqueConstraint('hearing_id', name=op.f('uq_acts_hearing_id')),
    )
    op.create_table('act_signatures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('act_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('recorded_by', sa.Text(), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('head_of_office', 'secretary', 'technician')", name=op.f('ck_act_signatures_role')),
    sa.ForeignKeyConstraint(['act_id'], ['acts.id'], name=op.f('fk_act_signatures_act_id_acts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_act_signatures')),
    sa.UniqueConstraint('act_id', 'role', name='uq_act_signatures_act_role'),
    )


def downgrade() -> None:
    op.drop_table('act_signatures')
    op.drop_table('acts')
    op.drop_index('ix_notifications_escalation_id', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('ix_escalation_actions_escalation_id', table_name='escalation_actions')
    op.drop_table('escalation_actions')
    op.drop_index('ix_escalations_state', table_name='escalations')
    op.drop_index('ix_escalations_hearing_id', table_name='escalations')
    op.drop_table('escalations')
    op.drop_index('ix_contacts_institution_id', table_name='contacts')
    op.drop_table('contacts')
