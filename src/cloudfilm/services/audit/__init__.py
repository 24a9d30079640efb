"""The audit trail: every access and refusal, in a keyed chain.

- ``log``: write, query and verify the chain (and its anchor file);
- ``record``: one stored record, and what listens for new ones;
- ``export``: FHIR AuditEvent and DICOM PS3.15 audit messages;
- ``syslog``: forward records to a collector (IHE ATNA, RFC 5424).
"""
