"""Nodule care: measure, track across scans and hospitals, assess, publish.

- ``service``: the use cases (measure a click, add, link, track, assess, trajectories);
- ``model``: errors, folders, study facts and measurement checks they share;
- ``measure``: segment the nodule under a click;
- ``reports`` and ``sr``: the TID 1500 SR per study, and SRs other software stored.
"""
