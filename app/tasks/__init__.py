"""Background work: the runner (the contract, once), one module per task kind, the
registry, and recovery."""
