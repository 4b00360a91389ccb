"""Reports over the timeline: what support leads run their team on.

One module per family (``volume``, ``times``: first response and resolution,
``attainment``: SLA, ``bot``, ``agents``), the shared parameters and local
buckets (``params``), the SQL pieces every report uses (``sql``: the live
and erased sources, epoch seconds, bucket keys), percentiles and business
hours (``stats``), what erasures keep (``erased``), the registry and the
service (``service``) and the terminal's tables (``render``).

Everything that can be counted is counted in the database (SQLAlchemy Core
on SQLite and PostgreSQL); what cannot be portable SQL (median and p90,
business-hours durations) is finished in Python from one row per ticket.
"""
