"""0002: the agent link - terminal tokens, presence, reports, sessions, relay queue.

Written out in full so that this revision never changes once released
(controller.store.agents declares the same tables for the code).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('terminal_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_terminal_tokens')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_terminal_tokens_token_sha256'))
    )
    op.create_index('ix_terminal_tokens_terminal_id', 'terminal_tokens', ['terminal_id'], unique=False)
    op.create_table('agent_presence',
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.Column('controller_id', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=True),
    sa.Column('agent_version', sa.String(length=64), nullable=True),
    sa.Column('health', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('terminal_id', name=op.f('pk_agent_presence'))
    )
    op.create_table('agent_reports',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.Column('report_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_reports')),
    sa.UniqueConstraint('terminal_id', 'report_id', name='uq_agent_reports_terminal_report')
    )
    op.create_index('ix_agent_reports_session_id', 'agent_reports', ['session_id'], unique=False)
    op.create_table('agent_sessions',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('callee', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('profile', sa.String(length=64), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_agent_sessions'))
    )
    op.create_table('relay_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('target', sa.String(length=128), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_relay_messages'))
    )
    op.create_index('ix_relay_messages_target', 'relay_messages', ['target', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_relay_messages_target', table_name='relay_messages')
    op.drop_table('relay_messages')
    op.drop_table('agent_sessions')
    op.drop_index('ix_agent_reports_session_id', table_name='agent_reports')
    op.drop_table('agent_reports')
    op.drop_table('agent_presence')
    op.drop_index('ix_terminal_tokens_terminal_id', table_name='terminal_tokens')
    op.drop_table('terminal_tokens')
