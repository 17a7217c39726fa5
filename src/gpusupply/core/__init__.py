"""Plain types and pure functions: no I/O here."""
