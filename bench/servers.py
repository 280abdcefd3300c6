"""Start a vendor and a proxy in front of it, print the proxy's port, run until stdin closes.

``gateway``: the full smsgw chain. ``bare``: a bare aiohttp proxy (TLS in, one pooled session
out, no checks, no logs) — the baseline the gateway's cost is measured against.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.config import load_config
from gateway.demo import make_self_signed
from gateway.keygen import random_token
from gateway.sandbox import SandboxState, build_sandbox_app
from gateway.server import start

SID = "AC" + "b2" * 16
TOKEN = "bench-vendor-token-0123456789"
USER = "AC0000000000000000000000000bench"
PASSWORD = "bench-client-password-0123456789"
VENDOR_AUTH = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()


async def bare_proxy(vendor_url: str, tls: ssl.SSLContext) -> tuple[int, aiohttp.ClientSession]:
    session = aiohttp.ClientSession(auto_decompress=False)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        path = request.raw_path.replace(USER, SID)
        async with session.post(
            vendor_url + path,
            data=body,
            headers={"Content-Type": request.content_type, "Authorization": VENDOR_AUTH},
        ) as resp:
            return web.Response(
                status=resp.status, body=await resp.read(), headers={"Content-Type": resp.content_type}
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return int(runner.addresses[0][1]), session


async def main(mode: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="smsgw-bench-"))
    make_self_signed(folder / "cert.pem", folder / "key.pem")
    vendor = web.AppRunner(build_sandbox_app(SandboxState(SID, TOKEN, "x")), access_log=None)
    await vendor.setup()
    await web.TCPSite(vendor, "127.0.0.1", 0).start()
    vendor_url = f"http://127.0.0.1:{vendor.addresses[0][1]}"
    closers = []
    if mode == "bare":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        port, session = await bare_proxy(vendor_url, tls)
        closers.append(session.close)
    else:
        (folder / "token").write_text(TOKEN)
        (folder / "hash_key").write_text(random_token(32))
        (folder / "policies").mkdir()
        (folder / "config.toml").write_text(f"""
[server]
listen = "127.0.0.1:0"
[server.tls]
cert_file = "cert.pem"
key_file = "key.pem"
[admin]
listen = "127.0.0.1:0"
[upstream]
provider = "twilio"
base_url = "{vendor_url}"
[upstream.credentials]
type = "basic"
username = "{SID}"
password = "file:token"
[logging]
access_log = "logs/access.jsonl"
audit_log = "logs/audit.jsonl"
hash_key = "file:hash_key"
""")
        (folder / "policies" / "bench.toml").write_text(f"""
[[client]]
id = "bench"
scopes = ["sms:send"]
[[client.basic]]
username = "{USER}"
password_sha256 = "{hashlib.sha256(PASSWORD.encode()).hexdigest()}"
[[route]]
name = "send"
path = "/2010-04-01/Accounts/{{account}}/Messages.json"
auth = ["basic"]
scopes = ["sms:send"]
""")
        running = await start(load_config(folder / "config.toml"))
        closers.append(running.stop)
        port = running.public_port
    print(port, folder / "cert.pem", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for close in closers:
        await close()
    await vendor.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
