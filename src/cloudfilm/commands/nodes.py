"""``cloudfilm node add|list|remove``: the known remote DICOM nodes."""

from __future__ import annotations

import argparse
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.nodes import NODE_SEES, InvalidNode, Node
from cloudfilm.services.nodes import UnknownNode


def run_add(args: argparse.Namespace) -> int:
    try:
        node = Node(args.name, args.aet, args.host, args.port, args.dicomweb,
                    sees=args.sees, issuer=args.issuer)
        with opened(args) as archive:
            archive.nodes.add(node)
            resolves = bool(archive.nodes.resolver.addresses(node.host))
    except InvalidNode as exc:
        print(f"cannot add node: {exc}")
        return 2
    print(f"added {node.name}: {node.ae_title}@{node.host}:{node.port}"
          + (f" {node.dicomweb_url}" if node.dicomweb_url else "")
          + f" (sees {node.sees}{' ' + node.issuer if node.sees == 'own' else ''})")
    if not resolves:
        print(f"warning: host {node.host!r} does not resolve here; associations from "
              f"{node.ae_title} are refused until it does")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with opened(args) as archive:
        nodes = archive.nodes.list()
    for node in nodes:
        print(f"{node.name}\t{node.ae_title}\t{node.host}:{node.port}\t{node.dicomweb_url or '-'}"
              f"\tsees={node.sees}\tissuer={node.issuer or '-'}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    try:
        with opened(args) as archive:
            archive.nodes.remove(args.name)
    except UnknownNode as exc:
        print(str(exc))
        return 1
    print(f"removed {args.name}")
    return 0


def register(commands: Any) -> None:
    node = commands.add_parser("node", help="known remote DICOM nodes")
    actions = node.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a node")
    add_data_arg(add)
    add.add_argument("name")
    add.add_argument("--aet", required=True)
    add.add_argument("--host", required=True,
                     help="host name or IP address: where we call the node, and the only "
                          "addresses it may call us from (a name is resolved)")
    add.add_argument("--port", type=int, required=True)
    add.add_argument("--dicomweb", help="DICOMweb root URL, e.g. http://pacs:8042/dicom-web")
    add.add_argument("--sees", choices=NODE_SEES, default="own",
                     help="what the node may query and retrieve by C-FIND/C-MOVE/C-GET: every "
                          "study, its own hospital's (--issuer), or nothing (default: own)")
    add.add_argument("--issuer", default="",
                     help="the hospital's IssuerOfPatientID (which studies 'own' covers)")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="list nodes")
    add_data_arg(listing)
    listing.set_defaults(func=run_list)
    remove = actions.add_parser("remove", help="remove a node")
    add_data_arg(remove)
    remove.add_argument("name")
    remove.set_defaults(func=run_remove)
