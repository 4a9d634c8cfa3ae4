"""What every layer relies on: settings, the database and what counts as an outage, logging,
how errors are answered, metrics, request limits, and worker processes."""
