"""``smsgw audit find`` and ``unseal``: records about one number or body (by keyed hash),
and sealed fields opened with the reviewer's key."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.commands.review.keys import Keys, UsageError, _read_env, load_keys
from gateway.commands.review.records import _json_lines, read_records
from gateway.core.redaction import hmac_hex, mask_number
from gateway.core.seal import SealError, load_unseal_key


def _e164(number: str) -> str:
    import phonenumbers  # only find needs it, and it is slow to import

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise UsageError("--recipient: not an international number (write it as +CC…)") from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _bodies(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


@dataclass
class FindResult:
    matches: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, raw line
    searched: int = 0
    other_key_ids: Counter[str] = field(default_factory=Counter)
    by_mask: int = 0


def find(paths: Iterable[Path], keys: Keys, body: str | None, recipient: str | None) -> FindResult:
    """Records whose body HMAC is that of ``body`` and (or) whose recipients hold ``recipient``
    (its HMAC, or, in a masked log, its mask: then the match is not exact and is counted)."""
    if body is None and recipient is None:
        raise UsageError("give --body TEXT, --recipient NUMBER or both")
    if keys.hash_key is None and body is not None:
        raise UsageError(
            "--body needs the log hash key: -c CONFIG, --hash-key-file PATH or --hash-key-env NAME"
        )
    want_body = hmac_hex(keys.hash_key, body) if body is not None and keys.hash_key else None
    e164 = _e164(recipient) if recipient is not None else None
    want_hashed = hmac_hex(keys.hash_key, e164) if e164 and keys.hash_key else None
    want_masked = mask_number(e164) if e164 else None
    out = FindResult()
    for path in paths:
        for number, raw, record, _ in _json_lines(path):
            if record is None:
                continue
            out.searched += 1
            if want_body is not None:
                bodies = _bodies(record.get("body"))
                hashed = [b for b in bodies if "hmac_sha256" in b]
                for b in hashed:
                    if b.get("key_id") not in (None, keys.hash_key_id):
                        out.other_key_ids[str(b.get("key_id"))] += 1
                if not any(b.get("hmac_sha256") == want_body for b in hashed):
                    continue
            if e164 is not None:
                recipients = record.get("recipients")
                items = recipients if isinstance(recipients, list) else []
                if want_hashed is not None and want_hashed in items:
                    pass
                elif want_masked in items:
                    out.by_mask += 1
                else:
                    continue
            out.matches.append((path.name, number, raw.decode("utf-8", "replace").rstrip("\n")))
    return out


def cmd_find(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = find([Path(p) for p in args.files], keys, args.body, args.recipient)
    for _, _, line in result.matches:
        print(line)
    print(f"{len(result.matches)} matching record(s) of {result.searched} searched", file=sys.stderr)
    if result.other_key_ids:
        ids = ", ".join(sorted(result.other_key_ids))
        print(
            f"note: {sum(result.other_key_ids.values())} bodies were hashed with other keys ({ids}); "
            "they cannot match this key",
            file=sys.stderr,
        )
    if result.by_mask:
        print(
            f"note: {result.by_mask} match(es) by the masked recipient only: other numbers share that mask",
            file=sys.stderr,
        )
    return 0 if result.matches else 1


@dataclass
class UnsealResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    opened: int = 0
    failed: Counter[str] = field(default_factory=Counter)


def unseal(paths: Iterable[Path], key_file: Path, passphrase: bytes | None = None) -> UnsealResult:
    """Records that hold sealed bodies, each body replaced by ``{"unsealed": text, "key_id": ...}``
    or, when this key cannot open it, kept with an ``error``."""
    key = load_unseal_key(key_file, passphrase)
    out = UnsealResult()

    def open_one(body: dict[str, Any]) -> dict[str, Any]:
        sealed = body.get("sealed")
        try:
            text = key.open(sealed)
        except SealError as exc:
            out.failed[str(exc)] += 1
            return {**body, "error": str(exc)}
        out.opened += 1
        return {"unsealed": text, "key_id": sealed.get("key_id")}

    for path in paths:
        for _, record, _ in read_records(path):
            if record is None:
                continue
            body = record.get("body")
            if isinstance(body, dict) and "sealed" in body:
                record["body"] = open_one(body)
            elif isinstance(body, list) and any(isinstance(b, dict) and "sealed" in b for b in body):
                record["body"] = [open_one(b) if isinstance(b, dict) and "sealed" in b else b for b in body]
            else:
                continue
            out.records.append(record)
    return out


def cmd_unseal(args: argparse.Namespace) -> int:
    passphrase = _read_env(args.passphrase_env, "--passphrase-env") if args.passphrase_env else None
    try:
        result = unseal([Path(p) for p in args.files], Path(args.key), passphrase)
    except SealError as exc:
        raise UsageError(str(exc)) from None
    for record in result.records:
        print(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    print(
        "note: this output holds message bodies in clear text; keep it like the private key", file=sys.stderr
    )
    print(f"{result.opened} body(ies) opened", file=sys.stderr)
    for reason, n in result.failed.most_common():
        print(f"{n} body(ies) not opened: {reason}", file=sys.stderr)
    return 1 if result.failed else 0
