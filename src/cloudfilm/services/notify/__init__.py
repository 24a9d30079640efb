"""Telling people: in-app messages and e-mail.

- ``outbox``: messages queued in the index, sent once;
- ``notifications``: the worker that delivers them and runs the reminder scans;
- ``reminders``: shares about to expire; ``followup_reminders``: the next lung CT is due.
"""
