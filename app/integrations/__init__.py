"""Clients for the outside world: SMTP, webhooks."""
