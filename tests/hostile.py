"""Hostile DICOM for tests: data sets nested deeper than any real one."""

from __future__ import annotations

import pydicom
from pydicom.sequence import Sequence

from factory import make_instance, to_bytes


def deeply_nested(depth: int, **kwargs: object) -> bytes:
    """A valid-looking CT instance whose (0040,A730) Content Sequence nests ``depth`` levels.

    Built bottom-up without recursion; undefined lengths make pydicom parse the whole
    chain eagerly when it reads the file (PS3.5 §7.5.2).
    """
    ds = make_instance(**kwargs)  # type: ignore[arg-type]
    inner = pydicom.Dataset()
    inner.TextValue = "leaf"
    for _ in range(depth):
        outer = pydicom.Dataset()
        outer.ContentSequence = Sequence([inner])
        outer.ContentSequence.is_undefined_length = True
        inner = outer
    ds.ContentSequence = inner.ContentSequence
    return write_deep(ds)


def write_deep(ds: pydicom.Dataset) -> bytes:
    """pydicom's writer recurses too: raise the limit just for writing the test file."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return to_bytes(ds)
    finally:
        sys.setrecursionlimit(limit)
