"""Servicehub: the domain and the service.

Every channel (web chat, SMS, email, Slack) feeds one ingest path; every
message lands on one unified timeline per contact.
"""

__version__ = "0.1.0"
