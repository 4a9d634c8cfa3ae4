"""Clients for the outside world: SMTP (a connection pool, and the embedded capture server),
webhooks and the SSRF guard, and how their failures are classified for a retry."""
