"""Durable background work over database tables: claim with a lease, per-group order, retry with backoff, dead letters."""
