"""Command groups of the ``cloudfilm`` CLI; each module exposes ``register(subparsers)``."""
