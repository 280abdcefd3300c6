"""The ``smsgw audit`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.commands.review.find import cmd_find, cmd_unseal
from gateway.commands.review.keys import UsageError
from gateway.commands.review.report import cmd_report
from gateway.commands.review.verify import cmd_head, cmd_verify


def _key_options(p: argparse.ArgumentParser, hash_key: bool = True, chain_key: bool = True) -> None:
    p.add_argument(
        "-c",
        "--config",
        help="the gateway's config: keys from its [logging] table; the chains to expect (server.workers)",
    )
    if hash_key:
        p.add_argument("--hash-key-file", help="a file holding logging.hash_key")
        p.add_argument("--hash-key-env", help="an environment variable holding logging.hash_key")
    if chain_key:
        p.add_argument("--chain-key-file", help="a file holding logging.chain_key")
        p.add_argument("--chain-key-env", help="an environment variable holding logging.chain_key")


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except UsageError as exc:
            print(f"smsgw audit: {exc}", file=sys.stderr)
            return 2

    return run


def add_audit_parser(sub: Any) -> None:
    """``smsgw audit …``, wired into the main parser by cli.py."""
    audit = sub.add_parser("audit", help="reviewers' commands: verify | head | find | unseal | report")
    commands = audit.add_subparsers(dest="audit_command", required=True)

    p = commands.add_parser("verify", help="check the chain and scan for clear text; exit 1 on any problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--anchor",
        action="append",
        metavar="HASH",
        help="a head noted earlier (`smsgw audit head`): it must be in the chain; repeat for several",
    )
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_verify))

    p = commands.add_parser(
        "head", help="print the head (last chain value) of each chain, to note as an anchor"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_head))

    p = commands.add_parser("find", help="records carrying a body (by its HMAC) and/or a recipient")
    p.add_argument("--body", help="the exact message text")
    p.add_argument("--recipient", help="an international number, +CC…")
    p.add_argument("files", nargs="+", metavar="FILE")
    _key_options(p, chain_key=False)
    p.set_defaults(func=_run(cmd_find))

    p = commands.add_parser("unseal", help="print records with sealed bodies opened")
    p.add_argument("--key", required=True, help="the reviewers' private key (PEM)")
    p.add_argument("--passphrase-env", help="an environment variable holding the key's passphrase")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_run(cmd_unseal))

    p = commands.add_parser("report", help="a one-page summary: HTML (default) or JSON")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=["html", "json"], default="html")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--access", action="append", metavar="FILE", help="an access log: counts probes (404/405)")
    _key_options(p, hash_key=False)
    p.set_defaults(func=_run(cmd_report))
