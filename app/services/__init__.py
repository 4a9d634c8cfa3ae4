"""Business rules. Services own the transaction and commit before any work is scheduled."""
