"""Registering an AI service: its node (with the profile) and the account it stores with.

Why an account of its own: results come back by STOW-RS with a bearer token
(``cloudfilm token issue ai.<node>``), and the account's role, ``ai-service``, sees no
study and may store nothing but results for series sent to its node
(services/ai/admission.py). Tokens are the usual ones: random, stored hashed, revocable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudfilm.domain.access import Role
from cloudfilm.domain.nodes import InvalidNode, Node
from cloudfilm.services.access.accounts import AccountError, accounts_of

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

ACCOUNT_PREFIX = "ai."


def account_name(node: Node) -> str:
    """The AI node's account: ``ai.`` and the node's name in lower case."""
    return ACCOUNT_PREFIX + node.name.lower()


def add_ai_node(archive: Archive, node: Node, *, issue_films: bool = False) -> str:
    """Add ``node`` (its ``ai`` profile set) and its ``ai-service`` account; returns the
    account's username. An existing ``ai-service`` account of that name is reused."""
    if node.ai is None:
        raise InvalidNode("ai: an AI node needs a profile (--ai)")
    accounts = accounts_of(archive)
    username = account_name(node)
    existing = accounts.get_user(username)
    if existing is not None and existing.role is not Role.AI_SERVICE:
        raise InvalidNode(f"user {username!r} exists and is not an AI service's account")
    archive.nodes.add(node, issue_films=issue_films)
    try:
        user = existing or accounts.add_user(username, Role.AI_SERVICE,
                                             display_name=f"AI service {node.name}")
    except AccountError as exc:
        archive.nodes.remove(node.name)
        raise InvalidNode(str(exc)) from exc
    archive.nodes.set_ai_user(node.name, user.id)
    return user.username
