"""The vendor registry: one Vendor per package, every registry derived from one tuple, and the
layers below vendors naming none."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gateway import vendors
from gateway.callbacks.events import EventFields
from gateway.callbacks.scheme import Scheme
from gateway.commands.sandbox import build_sandbox_app
from gateway.core.headers import is_credential_header
from gateway.messages.base import Provider
from gateway.vendors import REGISTRY, SANDBOX, SCHEMES, SIGNATURE_HEADERS, VENDORS, providers_of, schemes_of
from gateway.vendors.base import SandboxRoute, Vendor
from gateway.vendors.standin import SandboxState

ROOT = Path(__file__).resolve().parent.parent / "gateway"


def test_every_vendor_package_defines_its_vendor_and_is_listed() -> None:
    packages = sorted(p.name for p in (ROOT / "vendors").iterdir() if (p / "__init__.py").is_file())
    listed = {id(v) for v in VENDORS}
    for name in packages:
        module = __import__(f"gateway.vendors.{name}", fromlist=["VENDOR"])
        assert isinstance(module.VENDOR, Vendor), name
        assert id(module.VENDOR) in listed, f"gateway/vendors/{name} is not in VENDORS"
    assert len(VENDORS) == len(packages)


def test_every_vendor_has_its_section_in_the_docs() -> None:
    docs = ROOT.parent / "docs" / "vendors.md"
    headings = [line[3:] for line in docs.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    for vendor in VENDORS:
        assert any(h.startswith(vendor.title) for h in headings), vendor.title


def test_registries_are_derived_from_the_vendors() -> None:
    assert list(REGISTRY) == [p.name for v in VENDORS for p in v.providers]
    assert list(SCHEMES.by_name) == [s.name for v in VENDORS for s in v.schemes]
    assert SANDBOX == tuple(r for v in VENDORS for r in v.sandbox)
    for vendor in VENDORS:
        for provider, scheme in vendor.default_schemes.items():
            assert SCHEMES.default_for(provider) == scheme
    assert SCHEMES.default_for("generic") == ""  # no built-in signature: check-config asks for one


def test_a_name_two_vendors_claim_is_refused() -> None:
    twice = (vendors.twilio.VENDOR, vendors.twilio.VENDOR)
    with pytest.raises(ValueError, match="provider 'twilio'"):
        providers_of(twice)
    with pytest.raises(ValueError, match="signature 'twilio'"):
        schemes_of(twice)


def test_a_vendor_defaults_only_to_its_own_scheme() -> None:
    provider = Provider("acme", lambda settings: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="not its own"):
        Vendor("Acme", (provider,), default_schemes={"acme": "twilio"})
    scheme = Scheme("acme", lambda secret, o: None, EventFields())  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="lower case"):
        Vendor("Acme", (provider,), (scheme,), signature_headers=frozenset({"X-Acme-Signature"}))


@pytest.mark.parametrize(
    "name", sorted(SIGNATURE_HEADERS | {"telnyx-signature-ed25519", "x-telnyx-signature-ed25519"})
)
def test_vendor_signature_headers_are_credentials(name: str) -> None:
    """Never forwarded to the vendor, never logged: the core rule covers every declared header."""
    assert is_credential_header(name)
    assert is_credential_header(name.upper())
    assert is_credential_header(name.replace("-", "_"))


@pytest.mark.parametrize(
    "name",
    [
        "x-plivo-signature-v2-nonce",
        "x-plivo-signature-v3-nonce",
        "x-sinch-webhook-signature-nonce",
        "x-sinch-webhook-signature-timestamp",
        "x-sinch-webhook-signature-algorithm",
    ],
)
def test_signature_companions_are_not_credentials(name: str) -> None:
    assert not is_credential_header(name)


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(path.relative_to(ROOT)), node.module))
            elif isinstance(node, ast.Import):
                found.extend((str(path.relative_to(ROOT)), a.name) for a in node.names)
    return found


@pytest.mark.parametrize("package", ["core", "messages", "callbacks"])
def test_layers_below_vendors_name_none(package: str) -> None:
    """The callback framework, the send readers' framework and core are handed the vendors' facts."""
    upward = [
        (f, m) for f, m in _imports(package) if m == "gateway.vendors" or m.startswith("gateway.vendors.")
    ]
    assert upward == []


def test_two_sandbox_routes_taking_every_request_on_one_path_are_refused() -> None:
    """Which vendor would answer? The sandbox refuses to guess."""
    (generic_route,) = vendors.generic.VENDOR.sandbox
    twice = (*SANDBOX, SandboxRoute("POST", generic_route.path, generic_route.handler))
    with pytest.raises(ValueError, match="/v1/messages"):
        build_sandbox_app(SandboxState("AC1", "token", "token"), twice)
