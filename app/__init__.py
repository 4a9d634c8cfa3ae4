"""Signup Service: signups, bulk imports and notifications on durable BackgroundTasks."""
