"""docs/vendors.md "Adding a vendor", built from the page's own text: the four files of the made-up
vendor Acme become a package, registered as the page's registry line registers it, and a send and
a signed callback go through a real gateway to the sandbox and to an internal service."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web

import gateway.vendors
from gateway.commands.sandbox import build_sandbox_app
from gateway.core.headers import is_credential_header
from gateway.vendors import REGISTRY, SANDBOX, SCHEMES, VENDORS, providers_of, schemes_of
from tests.conftest import (
    BEARER_TOKEN,
    CLIENT_PASSWORD,
    CLIENT_USER,
    VENDOR_SID,
    VENDOR_TOKEN,
    GatewayFactory,
    Recorder,
    SandboxState,
    sha,
    start_vendor,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "vendors.md"
REGISTRY_SOURCE = Path(gateway.vendors.__file__)
SECRET_ENV = "SMSGW_TEST_ACME_WEBHOOK_SECRET"
SECRET = "acme-webhook-secret-5c1d"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Adding a vendor")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _files() -> dict[str, str]:
    """``<name>.py`` of the ``acme`` package -> its text, from the page's python blocks."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", _section(), re.S):
        first, _, rest = block.partition("\n")
        name = first.removeprefix("# acme/")
        assert name != first and name.endswith(".py"), first
        files[name] = rest
    return files


def test_the_registry_diff_fits_the_registry() -> None:
    """The page's diff applies: its context lines are in gateway/vendors/__init__.py, in order."""
    (diff,) = re.findall(r"```diff\n(.*?)```", _section(), re.S)
    source = REGISTRY_SOURCE.read_text(encoding="utf-8")
    added = [line[1:] for line in diff.splitlines() if line.startswith("+")]
    assert added == ["    acme,", "    acme.VENDOR,"]
    for hunk in diff.split("@@\n"):
        context = "\n".join(line[1:] for line in hunk.splitlines() if line.startswith(" "))
        assert context in source, hunk


def _register(monkeypatch: pytest.MonkeyPatch, replacing: list[tuple[object, object]]) -> None:
    """The registry with the page's line added: every gateway module holding a registry gets the
    new one (they import it by name, as ``from gateway.vendors import REGISTRY``)."""
    for name, module in list(sys.modules.items()):
        if name == "gateway" or name.startswith("gateway."):
            for attr, value in list(vars(module).items()):
                for old, new in replacing:
                    if value is old:
                        monkeypatch.setattr(module, attr, new)


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The page's package, importable as ``gateway.vendors.acme``, and registered."""
    package = tmp_path / "acme"
    package.mkdir()
    files = _files()
    assert sorted(files) == ["__init__.py", "callback.py", "sandbox.py", "send.py"]
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(gateway.vendors, "__path__", [*gateway.vendors.__path__, str(tmp_path)])
    module = importlib.import_module("gateway.vendors.acme")
    listed = (*VENDORS, module.VENDOR)
    registries = [(VENDORS, listed), (REGISTRY, providers_of(listed)), (SCHEMES, schemes_of(listed))]
    _register(monkeypatch, registries)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    yield module
    for name in [
        n for n in sys.modules if n == "gateway.vendors.acme" or n.startswith("gateway.vendors.acme.")
    ]:
        del sys.modules[name]
    if hasattr(gateway.vendors, "acme"):
        delattr(gateway.vendors, "acme")


async def test_the_documented_vendor_sends_and_verifies_callbacks(
    acme: ModuleType, make_gateway: GatewayFactory, pki: dict[str, Path]
) -> None:
    assert all(is_credential_header(h) for h in acme.VENDOR.signature_headers)
    state = SandboxState(VENDOR_SID, VENDOR_TOKEN, BEARER_TOKEN)
    vendor = await start_vendor(pki, build_sandbox_app(state, (*SANDBOX, *acme.VENDOR.sandbox)))

    async def ok(request: web.Request, body: bytes) -> web.StreamResponse:
        return web.Response(status=204)

    recorder = Recorder(ok)
    internal = await start_vendor(pki, recorder.app(), tls=False)
    try:
        user = {"id": "billing", "scopes": ["sms:send"], "countries": ["*"]}
        user["basic"] = [{"username": CLIENT_USER, "password_sha256": sha(CLIENT_PASSWORD)}]
        routes = [
            {"name": "send", "path": "/v1/sms", "kind": "sms", "auth": ["basic"], "scopes": ["sms:send"]},
            {
                "name": "reports",
                "path": "/callbacks/acme",
                "kind": "webhook",
                "forward_to": f"{internal.base_url}/events",
                "signing_secret": f"env:{SECRET_ENV}",
            },
        ]
        settings = {
            "upstream": {
                "provider": "acme",
                "credentials": {"type": "bearer", "token": "file:secrets/vendor_token"},
            }
        }
        gw = await make_gateway(
            vendor.base_url, settings=settings, policies={"p": {"client": [user], "route": routes}}
        )

        send = {"to": "+37255512367", "from": "MyBank", "text": "hello"}
        headers = {"Authorization": f"Bearer {CLIENT_PASSWORD}"}
        async with gw.session.post(gw.base + "/v1/sms", json=send, headers=headers) as response:
            assert response.status == 201, await response.text()
            message_id = (await response.json())["id"]
        (seen,) = state.received
        assert seen.headers["Authorization"] == f"Bearer {VENDOR_TOKEN}"  # the vendor's, not the client's
        async with gw.session.post(
            gw.base + "/v1/sms", json={**send, "group": "all"}, headers=headers
        ) as response:
            assert response.status == 400  # a field Acme's table does not declare
        assert len(state.received) == 1

        report = json.dumps({"id": message_id, "status": "delivered", "to": "+37255512367"}).encode()
        signature = hmac.new(SECRET.encode(), report, hashlib.sha256).hexdigest()
        signed = {"X-Acme-Signature": signature, "Content-Type": "application/json"}
        async with gw.session.post(gw.base + "/callbacks/acme", data=report, headers=signed) as response:
            assert response.status == 204
        (forwarded,) = recorder.seen
        assert forwarded.body == report
        assert forwarded.headers["X-Smsgw-Verified"] == "acme"
        assert "X-Acme-Signature" not in forwarded.headers
        forged = {**signed, "X-Acme-Signature": "00" * 32}
        async with gw.session.post(gw.base + "/callbacks/acme", data=report, headers=forged) as response:
            assert response.status == 401
        assert len(recorder.seen) == 1
        outcomes = [r for r in gw.audit() if r.get("route") == "reports" and r.get("event") == "outcome"]
        assert outcomes[0]["vendor_message_id"] == message_id
        assert outcomes[0]["vendor_status"] == "delivered"
        assert "+37255512367" not in gw.logs() and SECRET not in gw.logs()
    finally:
        await internal.runner.cleanup()
        await vendor.runner.cleanup()
