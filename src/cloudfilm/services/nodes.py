"""The registry of known remote nodes, used by C-MOVE destinations, AE checks and the SCU."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from cloudfilm.domain.nodes import InvalidNode, Node
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import NodeRow


class UnknownNode(LookupError):
    pass


def _node(row: NodeRow) -> Node:
    return Node(row.name, row.ae_title, row.host, row.port, row.dicomweb_url,
                sees=row.sees, issuer=row.issuer)


class NodeService:
    def __init__(self, index: Index) -> None:
        self.index = index

    def add(self, node: Node) -> Node:
        with self.index.write_session() as session:
            session.add(NodeRow(name=node.name, ae_title=node.ae_title.strip(), host=node.host,
                                port=node.port, dicomweb_url=node.dicomweb_url,
                                sees=node.sees, issuer=node.issuer))
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

    def by_ae_title(self, ae_title: str) -> list[Node]:
        with self.index.session() as session:
            rows = session.scalars(select(NodeRow).where(NodeRow.ae_title == ae_title.strip()))
            return [_node(r) for r in rows]

    def remove(self, name: str) -> None:
        with self.index.write_session() as session:
            removed = session.execute(delete(NodeRow).where(NodeRow.name == name)).rowcount
            session.commit()
        if not removed:
            raise UnknownNode(f"no known node named {name!r}")
