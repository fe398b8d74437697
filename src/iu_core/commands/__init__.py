"""The verbs as library functions, one per verb (alembic's `command.py`): `verbs` (dot, gate,
grant, lint, proof, runtime self-tests, server, demo), `db` (the release verbs of `iucore db`:
verify, preflight, adopt, inventory, report) and `demo`. The run verbs of `iucore db` (upgrade,
downgrade, stamp, current, history, backup, selftest) are the framework's
(`iu_core.framework.migrate`). Kept empty so that importing one verb module imports only it."""
