"""The ``smsgw`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from gateway.config import Config, ConfigError, load_config
from gateway.keygen import basic_credential, random_token


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's access logger is off (the gateway writes its own); its protocol errors go to
    # ``smsgw.protocol``, which keeps no request bytes (server.py).
    logging.getLogger("aiohttp.access").disabled = True


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        for warning in exc.warnings:
            print(warning.as_warning(), file=sys.stderr)
        print(f"{len(exc.problems)} problem(s); nothing was started.", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    """Exit 2 on any problem; warnings are printed on stderr and still exit 0."""
    config = _load(args.config)
    for warning in config.warnings:
        print(warning.as_warning(), file=sys.stderr)
    counts = f"{len(config.clients)} clients, {len(config.routes)} routes"
    if config.warnings:
        counts += f", {len(config.warnings)} warning(s)"
    print(f"{args.config}: OK ({counts})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import run_workers, serve

    config = _load(args.config)
    _configure_logging(config.settings.logging.level)
    for warning in config.warnings:
        logging.getLogger("smsgw").warning("%s", warning.as_warning())
    if config.settings.server.workers > 1:
        return run_workers(config)
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        print(f"smsgw: cannot listen: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _configure_logging("info")
    try:
        asyncio.run(run_demo(Path(args.dir), args.port, args.admin_port))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"smsgw demo: cannot listen: {exc.strerror} (try --port/--admin-port)", file=sys.stderr)
        return 1
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.kind in ("hmac", "hash-key"):
        print(random_token(32))
    else:
        password, digest = basic_credential()
        print(f"password        = {password}   # give this to the client, store it nowhere else")
        print(f'password_sha256 = "{digest}"   # put this in [[client.basic]]')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS security gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a config and its policies; exit 2 on any problem")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="run the sandbox vendor and a gateway in front of it")
    p.add_argument("--dir", default=".smsgw-demo")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--admin-port", type=int, default=9000)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("keygen", help="make a secret: hmac | hash-key | basic")
    p.add_argument("kind", choices=["hmac", "hash-key", "basic"])
    p.set_defaults(func=cmd_keygen)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
