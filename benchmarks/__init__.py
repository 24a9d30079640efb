"""Side-by-side performance runs of cloudfilm and Orthanc (not part of the test suite).

Run ``.venv/bin/python benchmarks/run.py [--quick] [--only NAME]``; see run.py.
"""
