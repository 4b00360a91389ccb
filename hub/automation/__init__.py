"""Automation rules (issue #17): when an event happens, if conditions hold, then actions.

``rules`` (the rule, its checks, the pure match), ``facts`` (what conditions
read), ``store`` (rules, the YAML file, the runs queue), ``service`` (matching
in the event's transaction, the worker, the silence sweep, the dry run).
"""
