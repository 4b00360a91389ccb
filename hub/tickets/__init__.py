"""Tickets: a handed-off conversation, its routing (rules, teams, agents' capacity) and its SLA clock."""
