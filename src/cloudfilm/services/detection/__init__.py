"""Automatic nodule detection: ``finder`` runs the built-in detector (domain/detection.py)
on a stored study and reports candidates for a physician to accept or reject.
"""
