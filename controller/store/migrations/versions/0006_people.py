"""0006: people come and go - a user can be disabled, API tokens expire and record their last use,
a token sign-in's page session knows its token, and the sign-in counters are shared by every
controller on the database (issue 11).

Written out in full so that this revision never changes once released
(controller.store.schema declares the same tables for the code).

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('users', sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_tokens', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_tokens', sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('web_sessions', sa.Column('api_token_id', sa.Integer(), nullable=True))
    op.create_table('login_counters',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_counters'))
    )


def downgrade() -> None:
    op.drop_table('login_counters')
    with op.batch_alter_table('web_sessions') as b:
        b.drop_column('api_token_id')
    with op.batch_alter_table('api_tokens') as b:
        b.drop_column('last_used_at')
        b.drop_column('expires_at')
    with op.batch_alter_table('users') as b:
        b.drop_column('disabled_at')
