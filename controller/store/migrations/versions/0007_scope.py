"""0007: national access (issue 11) - a user's scope (the institutions and regions their post
covers; none: national), the head of the court office as a role of its own, and an act's signature
knows the account that gave it (one account, at most one of the three signatures).

Written out in full so that this revision never changes once released
(controller.store.schema declares the same tables for the code).

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ROLES_0001 = "role IN ('admin', 'coordinator', 'secretary', 'technician', 'viewer')"
ROLES_0007 = "role IN ('admin', 'coordinator', 'head_of_office', 'secretary', 'technician', 'viewer')"


def upgrade() -> None:
    op.create_table('user_institutions',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('institution_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['institution_id'], ['institutions.id'], name=op.f('fk_user_institutions_institution_id_institutions'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_institutions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'institution_id', name=op.f('pk_user_institutions'))
    )
    op.create_index('ix_user_institutions_institution_id', 'user_institutions', ['institution_id'], unique=False)
    op.create_table('user_regions',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_regions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'region', name=op.f('pk_user_regions'))
    )
    with op.batch_alter_table('users') as b:
        b.drop_constraint(op.f('ck_users_role'), type_='check')
        b.create_check_constraint(op.f('ck_users_role'), ROLES_0007)
    with op.batch_alter_table('act_signatures') as b:
        b.add_column(sa.Column('user_name', sa.Text(), nullable=True))
        b.create_unique_constraint(op.f('uq_act_signatures_act_user'), ['act_id', 'user_name'])


def downgrade() -> None:
    with op.batch_alter_table('act_signatures') as b:
        b.drop_constraint(op.f('uq_act_signatures_act_user'), type_='unique')
        b.drop_column('user_name')
    op.execute("UPDATE users SET role = 'secretary' WHERE role = 'head_of_office'")
    with op.batch_alter_table('users') as b:
        b.drop_constraint(op.f('ck_users_role'), type_='check')
        b.create_check_constraint(op.f('ck_users_role'), ROLES_0001)
    op.drop_table('user_regions')
    op.drop_index('ix_user_institutions_institution_id', table_name='user_institutions')
    op.drop_table('user_institutions')
