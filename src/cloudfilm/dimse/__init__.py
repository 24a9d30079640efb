"""DIMSE network services (pynetdicom handlers that call the same services as HTTP)."""
