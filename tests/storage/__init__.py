"""Storage tests: SqliteStore and its migrations, on real database files."""
