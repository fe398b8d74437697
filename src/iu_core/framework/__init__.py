"""The guarded-migration framework: Alembic driven statement by statement from mirrored SQL files,
with the lock, the timeouts and their retries, the audit, checksums, rehearsal, self-tests,
backups, the offline script and the run's observations. It runs any project laid out like
`tests/projects/sample` and imports only `iu_core.pg`, `iu_core.errors` and `iu_core.config`."""
