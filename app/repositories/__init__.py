"""Every SQL statement of the service lives here. Repositories never commit."""
