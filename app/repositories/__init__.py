"""Every SQL statement of the service lives here, and the one keyset paginator.

Repositories never commit: the service calling them owns the transaction.
"""
