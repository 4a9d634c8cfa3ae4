"""Background work: the shared contract (runner), one module per task, and recovery."""
