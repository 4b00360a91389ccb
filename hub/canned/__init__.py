"""Canned replies: agents' reply templates, rendered in a sandbox (issue #17)."""
