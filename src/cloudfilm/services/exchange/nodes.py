"""The registry of known remote nodes, used by C-MOVE destinations, AE checks and the SCU,
which of them have their hospital's studies issued a cloud film (``--issue-films``), and
which are AI services (``--ai PROFILE``, issue 15: services/ai/)."""

from __future__ import annotations

import builtins
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from cloudfilm.domain.clock import as_utc
from cloudfilm.domain.nodes import InvalidNode, Node, ip_of, peer_matches
from cloudfilm.services.access.sharing import cutoff_now
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import NodeRow


class UnknownNode(LookupError):
    pass


@dataclass(frozen=True)
class FilmIssuer:
    """A node whose hospital's studies get a cloud film once stable: those of ``issuer``
    (IssuerOfPatientID) that arrived at or after ``since``."""

    name: str
    issuer: str
    since: datetime


def _require_issuer(node: Node) -> None:
    if not node.issuer:
        raise InvalidNode("issuer: required to issue films (the hospital's IssuerOfPatientID "
                          "says which studies are its own)")


@dataclass(frozen=True)
class AiNode:
    """An AI service: series its profile takes that arrive from ``since`` on are sent to
    it; it stores its results with the account ``user_id``."""

    node: Node
    since: datetime
    user_id: int | None


def _node(row: NodeRow) -> Node:
    return Node(row.name, row.ae_title, row.host, row.port, row.dicomweb_url,
                sees=row.sees, issuer=row.issuer, ai=row.ai_profile)


class HostResolver:
    """Host names to addresses, kept for a minute so an association does not wait on DNS
    each time; a name that does not resolve has no addresses (and so matches no peer)."""

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, frozenset[str]]] = {}

    def addresses(self, host: str) -> frozenset[str]:
        if ip_of(host) is not None:
            return frozenset({host})
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(host)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        try:
            found = frozenset(str(info[4][0]) for info in
                              socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            found = frozenset()
        with self._lock:
            self._known[host] = (now, found)
        return found


@dataclass(frozen=True)
class CallingNode:
    """The nodes registered under a calling AE title, and the one whose host is the peer's."""

    registered: tuple[Node, ...]
    matched: Node | None

    @property
    def impersonated(self) -> bool:
        """A registered AE title calling from an address none of its nodes' hosts names."""
        return bool(self.registered) and self.matched is None


class NodeService:
    def __init__(self, index: Index, resolver: HostResolver | None = None) -> None:
        self.index = index
        self.resolver = resolver or HostResolver()

    def add(self, node: Node, *, issue_films: bool = False) -> Node:
        """``issue_films``: studies of the node's issuer arriving from now on get a film;
        what is already archived does not (see `set_issue_films`)."""
        if issue_films:
            _require_issuer(node)
        with self.index.write_session() as session:
            session.add(NodeRow(name=node.name, ae_title=node.ae_title.strip(), host=node.host,
                                port=node.port, dicomweb_url=node.dicomweb_url,
                                sees=node.sees, issuer=node.issuer,
                                issue_films_since=cutoff_now() if issue_films else None,
                                ai_profile=node.ai, ai_since=cutoff_now() if node.ai else None))
            try:
                session.commit()
            except IntegrityError as exc:
                raise InvalidNode(f"name {node.name!r}: a node with this name exists") from exc
        return node

    def list(self) -> list[Node]:
        with self.index.session() as session:
            return [_node(r) for r in session.scalars(select(NodeRow).order_by(NodeRow.name))]

    def get(self, name: str) -> Node:
        with self.index.session() as session:
            row = session.scalars(select(NodeRow).where(NodeRow.name == name)).first()
        if row is None:
            raise UnknownNode(f"no known node named {name!r} (see 'cloudfilm node list')")
        return _node(row)

    def by_ae_title(self, ae_title: str) -> builtins.list[Node]:
        with self.index.session() as session:
            rows = session.scalars(select(NodeRow).where(NodeRow.ae_title == ae_title.strip()))
            return [_node(r) for r in rows]

    def calling_node(self, ae_title: str, peer_address: str) -> CallingNode:
        """Which registered node an association's caller is: its AE title *and* its address.

        An AE title is sent in clear by whoever connects (PS3.8 §9.3.2), so alone it proves
        nothing; the node's host (a name is resolved) must name the peer's address too.
        """
        registered = tuple(self.by_ae_title(ae_title)) if ae_title.strip() else ()
        matched = next((node for node in registered
                        if peer_matches(peer_address, self.resolver.addresses(node.host))), None)
        return CallingNode(registered, matched)

    def set_issue_films(self, name: str, on: bool) -> datetime | None:
        """Turn automatic films on (from now: an archive of older studies gets none) or off;
        on again keeps the first start. Returns since when films are issued, or None."""
        node = self.get(name)
        if on:
            _require_issuer(node)
        with self.index.write_session() as session:
            row = session.scalars(select(NodeRow).where(NodeRow.name == name)).one()
            if not on:
                row.issue_films_since = None
            elif row.issue_films_since is None:
                row.issue_films_since = cutoff_now()
            since = row.issue_films_since
            session.commit()
        return as_utc(since) if since is not None else None

    def film_issuers(self) -> builtins.list[FilmIssuer]:
        """The nodes with ``--issue-films`` on, by name."""
        with self.index.session() as session:
            rows = session.scalars(select(NodeRow).where(NodeRow.issue_films_since.is_not(None))
                                   .order_by(NodeRow.name)).all()
        return [FilmIssuer(r.name, r.issuer, as_utc(r.issue_films_since)) for r in rows
                if r.issue_films_since is not None]

    def set_ai_user(self, name: str, user_id: int) -> None:
        """The account an AI node stores its results with (services/ai/nodes.py)."""
        with self.index.write_session() as session:
            row = session.scalars(select(NodeRow).where(NodeRow.name == name)).one()
            row.ai_user_id = user_id
            session.commit()

    def ai_nodes(self) -> builtins.list[AiNode]:
        """The AI services, by name."""
        with self.index.session() as session:
            rows = session.scalars(select(NodeRow).where(NodeRow.ai_profile.is_not(None))
                                   .order_by(NodeRow.name)).all()
        return [AiNode(_node(r), as_utc(r.ai_since), r.ai_user_id) for r in rows
                if r.ai_since is not None]

    def ai_node_of_user(self, user_id: int) -> Node | None:
        """The AI service whose account ``user_id`` is, if any."""
        with self.index.session() as session:
            row = session.scalars(select(NodeRow).where(NodeRow.ai_user_id == user_id,
                                                        NodeRow.ai_profile.is_not(None))).first()
        return _node(row) if row is not None else None

    def remove(self, name: str) -> None:
        with self.index.write_session() as session:
            result = session.execute(delete(NodeRow).where(NodeRow.name == name))
            removed = result.rowcount  # type: ignore[attr-defined]  # DML returns a CursorResult
            session.commit()
        if not removed:
            raise UnknownNode(f"no known node named {name!r}")
