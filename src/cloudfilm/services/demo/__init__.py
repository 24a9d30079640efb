"""The demo: synthetic chest CTs with known truth, and what a newcomer meets.

- ``generate``: the CTs and their truth file;
- ``reports``: each study's radiology report in Chinese and English;
- ``care``: every nodule measured, tracked and assessed;
- ``film``: one hospital cloud film to open and keep.
"""
