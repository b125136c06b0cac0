"""lock-screen text per org unit, user e-mail, SMTP settings and outgoing mail

org_units.lock_message / lock_phone: what a lost tablet of the unit shows (inherited down the
tree); users.email: where a person is told of a wipe waiting for them; smtp_settings: the mail
server set in the console (password sealed); outgoing_mails: mails written with what they tell
and sent after commit.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lock_message', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('lock_phone', sa.String(length=32), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))
    op.create_table(
        'smtp_settings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=True),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('tls_mode', sa.String(length=16), nullable=False),
        sa.Column('username', sa.String(length=255), nullable=True),
        sa.Column('password_sealed', sa.LargeBinary(), nullable=True),
        sa.Column('from_address', sa.String(length=254), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'outgoing_mails',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('incident_id', sa.Integer(), nullable=True),
        sa.Column('to_address', sa.String(length=254), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('link_path', sa.String(length=255), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('outgoing_mails', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outgoing_mails_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_mails_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_mails_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outgoing_mails_status'), ['status'], unique=False)


def downgrade() -> None:
    op.drop_table('outgoing_mails')
    op.drop_table('smtp_settings')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email')
    with op.batch_alter_table('org_units', schema=None) as batch_op:
        batch_op.drop_column('lock_phone')
        batch_op.drop_column('lock_message')
