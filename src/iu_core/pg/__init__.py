"""The database and server layer: a target parsed once (`target`), the one connection factory
(`db`), the embedded PostgreSQL (`server`). It imports nothing of the layers above."""
