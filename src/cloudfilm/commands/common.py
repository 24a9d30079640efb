"""Pieces every command shares."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from cloudfilm.config import Settings
from cloudfilm.services.context import Archive


def add_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data directory (default $CLOUDFILM_DATA or ./var/cloudfilm)")


@contextmanager
def opened(args: argparse.Namespace, *, recover: bool = True) -> Iterator[Archive]:
    archive = Archive.open(Settings.load(args.data), recover=recover)
    try:
        yield archive
    finally:
        archive.close()
