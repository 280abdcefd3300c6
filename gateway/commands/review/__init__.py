"""The reviewers' commands: ``smsgw audit verify | head | find | unseal | report``.

They read audit files only, never the gateway's state, so a reviewer can run them on a copy of
the logs on another machine. Keys come from the gateway's config (``-c``: only its ``[logging]``
table and ``server.workers`` are read, so the vendor secrets are not needed) or from a file or
environment variable; with ``-c``, verify also knows which chains (one per worker) to expect.
Nothing printed here repeats clear text found in a log: a finding names the file, line and field
and shows a number masked, so a summary can be pasted into a report as it is.
"""

from gateway.commands.review.chain import Head, Scan, scan
from gateway.commands.review.cli import add_audit_parser
from gateway.commands.review.find import find, unseal
from gateway.commands.review.keys import Expected, Keys
from gateway.commands.review.records import body_problem, read_records
from gateway.commands.review.report import report_data
from gateway.commands.review.verify import verify_text

__all__ = [
    "Expected",
    "Head",
    "Keys",
    "Scan",
    "add_audit_parser",
    "body_problem",
    "find",
    "read_records",
    "report_data",
    "scan",
    "unseal",
    "verify_text",
]
