"""``smsgw audit verify`` and ``head``: the chain scan as text, and each chain's newest record."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from gateway.audit.log import GENESIS
from gateway.commands.review.chain import FileChain, Scan, _short, scan
from gateway.commands.review.keys import _HEX64, UsageError, expected_files, load_keys


def verify_text(result: Scan) -> str:
    """The summary a reviewer pastes into a report."""
    lines = ["smsgw audit verify"]
    files = ", ".join(f"{f.name} ({f.records})" for f in result.files)
    lines.append(f"files:      {len(result.files)}: {files}")
    lines.append(f"records:    {result.records}")
    span = f"{result.first_ts} .. {result.last_ts}" if result.first_ts else "-"
    lines.append(f"time span:  {span}")
    kind = "HMAC-SHA256 (chain key given)" if result.keyed else "SHA-256 (no chain key given)"
    if result.breaks:
        lines.append(f"chain:      BROKEN, {kind}: first at {result.breaks[0]}")
    else:
        chains = "; ".join(
            f"{_file_run(group)}: "
            f"{'from the first record' if group[0].start == GENESIS else 'after ' + _short(group[0].start)}"
            f" to {_short(group[-1].end)}"
            for group in result.groups
        )
        state = "INCOMPLETE" if result.gaps else "intact"
        lines.append(f"chain:      {state}, {kind}; {chains}")
    for gap in result.gaps:
        lines.append(f"            missing: {gap}")
    for note in result.notes:
        lines.append(f"            note: {note}")
    if not result.breaks:
        for head in result.heads:
            lines.append(f"head:       {head}")
    for anchor, where in result.anchors.items():
        lines.append(f"anchor:     {_short(anchor)} found at {where}")
    lines.append(f"clients:    {_counts(_totals(result.by_client))}")
    lines.append(f"events:     {_counts(result.events)}")
    lines.append(f"decisions:  {_counts(result.decisions)}")
    lines.append(f"refusals:   {_counts(result.reasons)}")
    if result.findings:
        kinds = Counter(f.what.split(" (")[0] for f in result.findings)
        lines.append(f"findings:   {len(result.findings)}: {_counts(kinds)}")
        shown = result.findings[:50]
        lines.extend(f"  {f}" for f in shown)
        if len(result.findings) > len(shown):
            lines.append(f"  … and {len(result.findings) - len(shown)} more")
    else:
        lines.append("findings:   none (no clear-text number, body or credential)")
    problems = []
    if result.breaks:
        problems.append("chain broken")
    if result.gaps:
        problems.append("chain incomplete")
    if result.findings:
        problems.append(f"{len(result.findings)} finding(s)")
    lines.append("result:     " + ("OK" if not problems else "FAILED (" + "; ".join(problems) + ")"))
    return "\n".join(lines) + "\n"


def _file_run(group: list[FileChain]) -> str:
    if len(group) <= 3:
        return " -> ".join(f.name for f in group)
    return f"{group[0].name} -> … ({len(group) - 2} more) -> {group[-1].name}"


def _totals(table: dict[str, Counter[str]]) -> Counter[str]:
    return Counter({name: sum(c.values()) for name, c in table.items()})


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "-"


def _anchors(values: list[str] | None) -> list[str]:
    anchors = []
    for value in values or []:
        anchor = value.strip().lower()
        if not _HEX64.fullmatch(anchor) or anchor == GENESIS:
            raise UsageError(
                f"--anchor {value!r}: not a chain value (64 hex digits, as `smsgw audit head` prints)"
            )
        anchors.append(anchor)
    return anchors


def cmd_verify(args: argparse.Namespace) -> int:
    keys = load_keys(args)
    result = scan(
        [Path(p) for p in args.files],
        keys.chain_key,
        anchors=_anchors(args.anchor),
        expected=expected_files(args),
    )
    sys.stdout.write(verify_text(result))
    if result.breaks:
        print(f"smsgw audit verify: {result.breaks[0]}", file=sys.stderr)
    elif result.gaps:
        print(f"smsgw audit verify: {result.gaps[0]}", file=sys.stderr)
    return 0 if result.ok else 1


def cmd_head(args: argparse.Namespace) -> int:
    """The head of each chain, once its links are checked: a broken chain has no head to note."""
    keys = load_keys(args)
    result = scan([Path(p) for p in args.files], keys.chain_key)
    if result.breaks:
        print(f"smsgw audit head: {result.breaks[0]}", file=sys.stderr)
        return 1
    for head in result.heads:
        print(head)
    for gap in result.gaps:
        print(f"note: {gap}", file=sys.stderr)
    if not result.heads:
        print("smsgw audit head: no record in the files given", file=sys.stderr)
        return 1
    return 0
