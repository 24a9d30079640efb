"""Shared pieces of the property-based fuzz tests (hypothesis).

`make test` runs each property on a small, derandomized set of examples (reproducible,
a minute or two in all); `make fuzz` sets CLOUDFILM_FUZZ_EXAMPLES and explores freely.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("CLOUDFILM_FUZZ_EXAMPLES", "0") or 0)


def fuzz_settings(examples: int) -> Any:
    """``examples`` in `make test`; CLOUDFILM_FUZZ_EXAMPLES (randomized) in `make fuzz`."""
    return settings(max_examples=FUZZ_EXAMPLES or examples, derandomize=not FUZZ_EXAMPLES,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


SPECIAL_LENGTHS = [0, 1, 7, 8, 0xFFFF, 0xFFFFFFFE, 0xFFFFFFFF, 0x7FFFFFFF]


@st.composite
def mutated(draw: Any, original: bytes) -> bytes:
    """``original`` after a few byte-level mutations: flips, lying lengths, cuts, splices."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "length", "cut", "insert", "duplicate"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "length":
            value = draw(st.sampled_from(SPECIAL_LENGTHS))
            data[at:at + 4] = value.to_bytes(4, draw(st.sampled_from(["little", "big"])))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 4096))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            size = draw(st.integers(1, 512))
            data[at:at] = data[at:at + size]
    return bytes(data)
