"""``cloudfilm node add|list|edit|remove``: the known remote DICOM nodes.

``--issue-films`` has every study of the node's hospital (its ``--issuer``) that arrives
from then on issued a cloud film once stable (services/access/film_autoissue.py, run by
``cloudfilm serve``); ``node edit NAME --no-issue-films`` stops it.

``--ai PROFILE`` makes the node an AI service (issue 15): each series its profile takes
(domain/ai_profiles.py) arriving from then on is sent to it once stable, and it stores
its results (SR, SEG) with the account ``ai.<name>`` (services/ai/).
"""

from __future__ import annotations

import argparse
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.ai_profiles import AI_PROFILES
from cloudfilm.domain.nodes import NODE_SEES, InvalidNode, Node
from cloudfilm.services.ai.nodes import add_ai_node
from cloudfilm.services.exchange.nodes import UnknownNode

FILMS_ON = ("issuing a cloud film for each study of {issuer} arriving {start}, once no "
            "instance came for CLOUDFILM_STABLE_AGE seconds (while 'cloudfilm serve' runs)")


def run_add(args: argparse.Namespace) -> int:
    try:
        node = Node(args.name, args.aet, args.host, args.port, args.dicomweb,
                    sees=args.sees, issuer=args.issuer, ai=args.ai)
        with opened(args) as archive:
            account = None
            if node.ai:
                account = add_ai_node(archive, node, issue_films=args.issue_films)
            else:
                archive.nodes.add(node, issue_films=args.issue_films)
            resolves = bool(archive.nodes.resolver.addresses(node.host))
    except InvalidNode as exc:
        print(f"cannot add node: {exc}")
        return 2
    print(f"added {node.name}: {node.ae_title}@{node.host}:{node.port}"
          + (f" {node.dicomweb_url}" if node.dicomweb_url else "")
          + f" (sees {node.sees}{' ' + node.issuer if node.sees == 'own' else ''})")
    if args.issue_films:
        print(FILMS_ON.format(issuer=node.issuer, start="from now on"))
    if account:
        print(f"AI service ({node.ai}): series it takes arriving from now on are sent by "
              f"{'STOW-RS' if node.dicomweb_url else 'C-STORE'} once stable; it stores its "
              f"results with a token of {account!r}: cloudfilm token issue {account}")
    if not resolves:
        print(f"warning: host {node.host!r} does not resolve here; associations from "
              f"{node.ae_title} are refused until it does")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with opened(args) as archive:
        nodes = archive.nodes.list()
        films = {f.name: f.since for f in archive.nodes.film_issuers()}
    for node in nodes:
        since = films.get(node.name)
        print(f"{node.name}\t{node.ae_title}\t{node.host}:{node.port}\t{node.dicomweb_url or '-'}"
              f"\tsees={node.sees}\tissuer={node.issuer or '-'}"
              f"\tissue_films={since.isoformat(timespec='seconds') if since else 'off'}"
              f"\tai={node.ai or '-'}")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    try:
        with opened(args) as archive:
            since = archive.nodes.set_issue_films(args.name, args.issue_films)
            issuer = archive.nodes.get(args.name).issuer
    except UnknownNode as exc:
        print(str(exc))
        return 1
    except InvalidNode as exc:
        print(f"cannot edit node: {exc}")
        return 2
    if since is None:
        print(f"{args.name}: no automatic films (those already issued stay)")
    else:
        print(f"{args.name}: " + FILMS_ON.format(
            issuer=issuer, start=f"since {since.isoformat(timespec='seconds')}"))
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
    add.add_argument("--issue-films", action="store_true",
                     help="issue a cloud film for each study of --issuer that arrives from now "
                          "on, once stable (CLOUDFILM_STABLE_AGE s without a new instance)")
    add.add_argument("--ai", choices=sorted(AI_PROFILES), default=None,
                     help="an AI service: send it each series this profile takes (ct-chest: "
                          "axial chest CT) arriving from now on, once stable; its results "
                          "come back by STOW-RS with a token of the account ai.<name>")
    add.set_defaults(func=run_add)
    listing = actions.add_parser("list", help="list nodes")
    add_data_arg(listing)
    listing.set_defaults(func=run_list)
    edit = actions.add_parser("edit", help="change a node's settings")
    add_data_arg(edit)
    edit.add_argument("name")
    films = edit.add_mutually_exclusive_group(required=True)
    films.add_argument("--issue-films", dest="issue_films", action="store_true", default=None,
                       help="start issuing films for studies arriving from now on "
                            "(kept as it is if already on)")
    films.add_argument("--no-issue-films", dest="issue_films", action="store_false",
                       help="stop issuing films automatically")
    edit.set_defaults(func=run_edit)
    remove = actions.add_parser("remove", help="remove a node")
    add_data_arg(remove)
    remove.add_argument("name")
    remove.set_defaults(func=run_remove)
