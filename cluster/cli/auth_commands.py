"""`raftflow auth issue|revoke|list`: the cluster's bearer tokens (admin only).

    raftflow auth issue --role writer --name "billing service"
    raftflow auth issue --role worker --queue payments --queue refunds --expires 30d
    raftflow auth list
    raftflow auth revoke 3f9c2a17b4d0

`issue` prints the token once, on stdout (or into `--out FILE`, created 0600): the
cluster keeps only its secret's SHA-256 and cannot show it again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import time

from raftflow.cluster.cli.common import EXIT_USAGE, CommandFailed, add_common, client_for
from raftflow.raft.fs import write_private
from raftflow.statemachine.auth import AccessRole

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 12h or 30d")
    return int(match[1]) * _UNIT_S[match[2]]


def add_auth_commands(sub) -> None:
    auth = sub.add_parser("auth", help="issue, list and revoke the cluster's bearer tokens (admin only)")
    auth_sub = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True, parser_class=type(auth))
    issue = auth_sub.add_parser(
        "issue", help="make a token for a role and print it (once)",
        description="Make a token: admin (everything), writer (read and write), reader (read only) or "
        "worker (poll and report on the --queue task queues only). It is printed once; the cluster keeps "
        "only a hash of its secret.",
    )
    issue.add_argument("--role", required=True, choices=[r.value for r in AccessRole])
    issue.add_argument("--queue", action="append", default=[], help="a task queue a worker token may use; repeatable")
    issue.add_argument("--name", default="", help="who or what holds it (shown by `auth list`)")
    issue.add_argument("--expires", type=_duration_s, help="lifetime, e.g. 30m, 12h, 90d (default: never)")
    issue.add_argument("--out", help="write the token to this file (0600) instead of printing it")
    add_common(issue, output=True)
    issue.set_defaults(func=_cmd_issue)

    listing = auth_sub.add_parser("list", help="the tokens issued and not revoked (never their secrets)")
    add_common(listing, output=True)
    listing.set_defaults(func=_cmd_list)

    revoke = auth_sub.add_parser("revoke", help="revoke a token by its id; calls with it are refused from then on")
    revoke.add_argument("token_id", help="the id `auth list` shows (the second part of the token)")
    add_common(revoke, output=True)
    revoke.set_defaults(func=_cmd_revoke)


def _cmd_issue(args: argparse.Namespace) -> int:
    if args.role == AccessRole.WORKER and not args.queue:
        raise CommandFailed("a worker token needs at least one --queue (the task queues it may use)", EXIT_USAGE)
    if args.role != AccessRole.WORKER and args.queue:
        raise CommandFailed(f"--queue is for worker tokens; a {args.role} token is not limited to queues", EXIT_USAGE)
    expires_ms = int((time.time() + args.expires) * 1000) if args.expires else 0
    with client_for(args) as client:
        issued = client.issue_token(args.role, queues=args.queue, name=args.name, expires_ms=expires_ms)
    if args.out:
        write_private(args.out, (issued.token + "\n").encode())
    info = issued.info
    if args.output == "json":
        row = _row(info)
        if not args.out:
            row["token"] = issued.token
        print(json.dumps(row))
    elif args.out:
        print(f"token {info.token_id} ({info.role.value}) written to {os.path.abspath(args.out)}")
    else:
        print(issued.token)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        tokens = client.list_tokens()
    if args.output == "json":
        print(json.dumps([_row(t) for t in tokens]))
        return 0
    if not tokens:
        print("no tokens issued (the bootstrap admin token, id admin, is in the nodes' config)")
        return 0
    print(f"{'ID':<14} {'ROLE':<7} {'QUEUES':<24} {'EXPIRES':<17} NAME")
    for t in tokens:
        print(f"{t.token_id:<14} {t.role.value:<7} {','.join(t.queues) or '-':<24} {_when(t.expires_ms):<17} {t.name}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        revoked = client.revoke_token(args.token_id)
    if args.output == "json":
        print(json.dumps({"token_id": args.token_id, "revoked": revoked}))
    elif revoked:
        print(f"token {args.token_id} revoked")
    else:
        raise CommandFailed(f"no token {args.token_id} (already revoked, or never issued; see `raftflow auth list`)")
    return 0


def _row(info) -> dict:
    return {
        "token_id": info.token_id, "role": info.role.value, "queues": list(info.queues), "name": info.name,
        "issued_ms": info.issued_ms, "expires_ms": info.expires_ms,
    }


def _when(ms: int) -> str:
    if not ms:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
