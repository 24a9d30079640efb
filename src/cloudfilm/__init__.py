"""cloudfilm: a standards-based cloud medical imaging archive."""

__version__ = "0.1.0"

from cloudfilm import charsets as _charsets

_charsets.configure()
