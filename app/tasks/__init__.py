"""Background work: the runner (the contract, once), the process's runtime it reaches by
name, one module per task kind, the registry, and recovery."""
