"""``smsgw alerts clear``: lift a pumping-guard block at once, for every replica.

The clear deletes the subject's send and conversion counters in the shared storage (country, number
prefix or client address), so the subject starts afresh; sends after it count as usual. Under
``memory://`` the counters live inside the gateway process, which a command cannot reach: restart
it, or reload with ``action = "learn"``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import netaddr

from gateway.alerts.conversion import ConversionGuard
from gateway.alerts.conversion_store import RedisConversionStore
from gateway.commands.command import load_or_exit
from gateway.commands.conversion_review import ConversionTally
from gateway.commands.review import read_records
from gateway.config import Config
from gateway.recipients.phone import parse_recipient
from gateway.storage.service import RedisKeyValue, StorageUnavailable, open_storage

__all__ = ["add_alerts_parser"]


def _subject(guard: ConversionGuard, args: argparse.Namespace) -> tuple[str, str] | str:
    """(kind, stored id), or why the value cannot name one. A number or an address is turned into
    its HMAC id here; an id as an alert shows it is taken as it is."""
    keys = guard.storage.keys
    assert keys is not None
    if args.country:
        code = args.country.strip().upper()
        return ("country", code) if len(code) == 2 and code.isalpha() else "--country takes an ISO 3166 code"
    if args.prefix:
        value = args.prefix.strip()
        if value.startswith("+"):
            try:
                e164 = parse_recipient(value).e164
            except Exception:
                return "--prefix takes a number of the range in E.164 form, or the prefix_id of an alert"
            return "prefix", keys.digest("prefix", e164[:-4])[:16]
        return "prefix", value.lower()
    value = args.address.strip()
    try:
        return "address", keys.digest("ip", str(netaddr.IPAddress(value)))[:16]
    except (netaddr.AddrFormatError, ValueError):
        return "address", value.lower()


async def _clear(config: Config, args: argparse.Namespace) -> int:
    s = config.settings
    rule = s.alerts.conversion
    if rule is None:
        print(f"{config.path}: alerts.conversion: the rule is not configured", file=sys.stderr)
        return 2
    hash_key = s.logging.hash_key_bytes
    storage = open_storage(s.storage, hash_key)
    try:
        backend = storage.backend
        if not isinstance(backend, RedisKeyValue):
            print(
                f"{config.path}: storage.url: memory:// counters live inside the gateway process; "
                'restart it, or reload with [alerts.conversion] action = "learn"',
                file=sys.stderr,
            )
            return 2
        guard = ConversionGuard(rule, storage, RedisConversionStore(backend))
        subject = _subject(guard, args)
        if isinstance(subject, str):
            print(subject, file=sys.stderr)
            return 2
        kind, subject_id = subject
        try:
            await guard.store.clear(guard.subject_keys(kind, subject_id, guard.bucket()))
        except StorageUnavailable as exc:
            print(f"{config.path}: storage.url: storage did not answer ({exc})", file=sys.stderr)
            return 1
        shown = subject_id if kind == "country" else subject_id[:12]
        print(f"cleared {kind} {shown}: sends counted before now no longer count against it")
        return 0
    finally:
        await storage.close()


def cmd_alerts_clear(args: argparse.Namespace) -> int:
    return asyncio.run(_clear(load_or_exit(args.config, "nothing was cleared"), args))


def add_alerts_parser(sub: Any) -> None:
    p = sub.add_parser("alerts", help="act on the anomaly rules' state (the pumping guard)")
    verbs = p.add_subparsers(dest="alerts_command", required=True)
    clear = verbs.add_parser(
        "clear", help="lift a conversion block for a country, number prefix or client address"
    )
    clear.add_argument("-c", "--config", required=True)
    which = clear.add_mutually_exclusive_group(required=True)
    which.add_argument("--country", help="an ISO 3166 code, as the alert names it")
    which.add_argument("--prefix", help="a number of the range (E.164), or the prefix_id of the alert")
    which.add_argument("--address", help="a client address, or the address_id of the alert")
    clear.set_defaults(func=cmd_alerts_clear)
    add_conversion_parser(verbs)


def _text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'kind':8} {'subject':18} {'sends':>7} {'entered':>8} {'rate':>6} {'refused':>8} {'would':>6}"]
    for r in rows:
        rate = f"{r['conversion']:.0%}" if r["conversion"] is not None else "-"
        would = "yes" if r["would_refuse"] else ""
        lines.append(
            f"{r['kind']:8} {r['subject'][:18]:18} {r['sends']:>7} {r['converted']:>8} {rate:>6} "
            f"{r['refused']:>8} {would:>6}"
        )
    return "\n".join(lines) + "\n"


def cmd_conversion(args: argparse.Namespace) -> int:
    tally = ConversionTally()
    for name in args.files:
        for _, record, _ in read_records(Path(name)):
            if record is not None:
                tally.count(record)
    rows = tally.rows(args.min_sends, args.threshold)
    sys.stdout.write(_text(rows))
    would = sum(1 for r in rows if r["would_refuse"])
    print(
        f"{would} subject(s) under {args.threshold:.0%} conversion with at least {args.min_sends} sends",
        file=sys.stderr,
    )
    return 0


def add_conversion_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "conversion",
        help="OTP conversion by country and prefix from audit logs, and what a threshold would refuse",
    )
    p.add_argument("--threshold", type=float, default=0.2, help="the rule's threshold to try (0 to 1)")
    p.add_argument("--min-sends", type=int, default=20, help="the rule's min_sends to try")
    p.add_argument("files", nargs="+", help="audit log files")
    p.set_defaults(func=cmd_conversion)
