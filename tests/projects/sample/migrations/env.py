"""Alembic environment: everything (lock, timeouts, audit, rehearsal) is in iu_core.framework.alembic_env."""

from iu_core.framework.alembic_env import run_env

run_env()
