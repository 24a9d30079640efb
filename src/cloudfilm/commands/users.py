"""``cloudfilm user add|list`` and ``cloudfilm token issue|list|revoke``.

Why passwords and tokens only through stdin: command lines end up in shell history
and in ``ps`` output. ``token issue`` prints nothing but the token on stdout, so it
can be captured (``TOKEN=$(cloudfilm token issue alice)``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.access import Role
from cloudfilm.services.access.accounts import AccountError, accounts_of, parse_duration


def _read_stdin_line(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise AccountError(f"no {what} on standard input")
    return value


def run_user_add(args: argparse.Namespace) -> int:
    try:
        password = _read_stdin_line("password") if args.password_stdin else None
        with opened(args, recover=False) as archive:
            user = accounts_of(archive).add_user(
                args.name, args.role, password, display_name=args.display_name or "",
                email=args.email, oidc_subject=args.oidc_subject)
    except AccountError as exc:
        print(f"cannot add user: {exc}", file=sys.stderr)
        return 1
    person = f", person {user.person_id}" if user.person_id is not None else ""
    print(f"added {user.username} ({user.role.value}{person})")
    return 0


def run_user_list(args: argparse.Namespace) -> int:
    with opened(args, recover=False) as archive:
        users = accounts_of(archive).list_users()
    print("username\trole\tperson\tlogin\tdisplay name\temail")
    for u in users:
        methods = (("password", u.has_password), ("sso", bool(u.oidc_subject)))
        login = "+".join(name for name, on in methods if on) or "-"
        print(f"{u.username}\t{u.role.value}\t{u.person_id if u.person_id is not None else '-'}"
              f"\t{'disabled' if u.disabled else login}\t{u.display_name or '-'}\t{u.email or '-'}")
    return 0


def run_token_issue(args: argparse.Namespace) -> int:
    try:
        expires = parse_duration(args.expires_in)
        with opened(args, recover=False) as archive:
            token = accounts_of(archive).issue_token(args.name, expires, label=args.label or "")
    except AccountError as exc:
        print(f"cannot issue token: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def run_token_list(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            tokens = accounts_of(archive).list_tokens(args.name)
    except AccountError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print("id\tlabel\tcreated\texpires\tlast used\tstatus")
    for t in tokens:
        status = "revoked" if t.revoked_at else "live"
        print(f"{t.id}\t{t.label or '-'}\t{_when(t.created_at)}\t{_when(t.expires_at)}"
              f"\t{_when(t.last_used_at)}\t{status}")
    return 0


def run_token_revoke(args: argparse.Namespace) -> int:
    try:
        target = _read_stdin_line("token") if args.stdin else args.token_or_id
        if not target:
            raise AccountError("give a token or token id, or --stdin")
        with opened(args, recover=False) as archive:
            info = accounts_of(archive).revoke_token(target.strip())
    except AccountError as exc:
        print(f"cannot revoke: {exc}", file=sys.stderr)
        return 1
    print(f"revoked token {info.id} of {info.username}")
    return 0


def _register_user(commands: Any) -> None:
    user = commands.add_parser("user", help="user accounts")
    actions = user.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user (a patient also gets a Person)")
    add_data_arg(add)
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--display-name")
    add.add_argument("--email")
    add.add_argument("--oidc-subject", help="the single sign-on 'sub' to bind to this user")
    add.set_defaults(func=run_user_add)
    listing = actions.add_parser("list", help="list users")
    add_data_arg(listing)
    listing.set_defaults(func=run_user_list)


def _register_token(commands: Any) -> None:
    token = commands.add_parser("token", help="API bearer tokens")
    actions = token.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="issue a token; prints only the token")
    add_data_arg(issue)
    issue.add_argument("name", help="username")
    issue.add_argument("--expires-in", default="90d", help="30m, 12h, 1d, 90d, ... or never")
    issue.add_argument("--label", help="what the token is for")
    issue.set_defaults(func=run_token_issue)
    listing = actions.add_parser("list", help="list a user's tokens (ids, never the tokens)")
    add_data_arg(listing)
    listing.add_argument("name", help="username")
    listing.set_defaults(func=run_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token (the token itself or its id)")
    add_data_arg(revoke)
    revoke.add_argument("token_or_id", nargs="?")
    revoke.add_argument("--stdin", action="store_true", help="read the token from standard input")
    revoke.set_defaults(func=run_token_revoke)


def register(commands: Any) -> None:
    _register_user(commands)
    _register_token(commands)
