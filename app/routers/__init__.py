"""HTTP only: parse, call a service, schedule background work, shape the response."""
