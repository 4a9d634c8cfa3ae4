"""Cross-cutting pieces: settings, database, logging, errors."""
