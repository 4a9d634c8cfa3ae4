"""What every layer relies on: settings, the database and what counts as an outage, Alembic
at start and for /readyz, logging and request ids, how errors are answered, metrics, limits on
a request's head, body and rate, security headers, the OpenAPI document, graceful shutdown,
and worker processes."""
