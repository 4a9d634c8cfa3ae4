"""Real servers for the tests and benchmarks: PostgreSQL, SMTP, HTTP receivers, the app itself."""
