"""Background work: the runner (the contract, once), settles and audit entries written
together, the process's runtime it reaches by name, one module per task kind, the
registry, recovery, the loops a worker runs, and waking workers (LISTEN/NOTIFY)."""
