"""Known remote DICOM nodes: validated at construction (PS3.5 §6.2 AE rules).

A node's ``host`` is both where we call it and where it may call us from: an
association whose calling AE title is a node's is accepted only from an address the
node's host names (see `peer_matches`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

from cloudfilm.domain.ai_profiles import UnknownProfile, profile_named

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A DNS name (RFC 1123 labels; '_' too, as Windows hosts use it) or an IP address.
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
                        r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$")


# What a calling node may query and retrieve: every study, its own hospital's
# (patient records with the node's IssuerOfPatientID), or nothing.
NODE_SEES = ("all", "own", "none")


class InvalidNode(ValueError):
    """A node definition that can't be used; the message names the field."""


@dataclass(frozen=True)
class Node:
    name: str
    ae_title: str
    host: str
    port: int
    dicomweb_url: str | None = None
    sees: str = "own"  # what the node may query and retrieve: all | own | none
    issuer: str = ""  # the hospital's IssuerOfPatientID, for sees=own
    ai: str | None = None  # an AI service's profile (domain/ai_profiles.py), e.g. "ct-chest"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidNode(f"name {self.name!r}: use letters, digits, '_', '.', '-' (max 64)")
        title = self.ae_title.strip()
        if not title or len(title) > 16 or "\\" in title or not title.isprintable():
            raise InvalidNode(f"aet {self.ae_title!r}: an AE title is 1-16 printable characters, "
                              "no backslash (PS3.5 Table 6.2-1, AE)")
        if not self.host:
            raise InvalidNode("host is required")
        if ip_of(self.host) is None and not _HOST_NAME.match(self.host):
            raise InvalidNode(f"host {self.host!r}: a host name or IP address, without a port "
                              "or scheme (the port is given separately)")
        if not 1 <= self.port <= 65535:
            raise InvalidNode(f"port {self.port}: must be 1-65535")
        if self.dicomweb_url:
            parsed = urlparse(self.dicomweb_url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise InvalidNode(f"dicomweb {self.dicomweb_url!r}: must be an http(s) URL")
        if self.sees not in NODE_SEES:
            raise InvalidNode(f"sees {self.sees!r}: use one of {', '.join(NODE_SEES)}")
        if len(self.issuer) > 64:
            raise InvalidNode("issuer: at most 64 characters (LO)")
        if self.ai is not None:
            try:
                profile_named(self.ai)
            except UnknownProfile as exc:
                raise InvalidNode(str(exc)) from None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "aet": self.ae_title, "host": self.host, "port": self.port,
                "dicomweb": self.dicomweb_url, "sees": self.sees, "issuer": self.issuer, "ai": self.ai}


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_of(text: str) -> IPAddress | None:
    """An address literal as one form: IPv4-mapped IPv6 (``::ffff:10.0.0.1``) as IPv4,
    no zone index; None when ``text`` is not an address."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def peer_matches(peer: str, host_addresses: Iterable[str]) -> bool:
    """Whether the association's peer address is one of the addresses a node's host names."""
    peer_ip = ip_of(peer)
    return peer_ip is not None and any(ip_of(a) == peer_ip for a in host_addresses)
