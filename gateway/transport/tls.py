"""TLS in and out, HSTS and the other security headers, and what counts as HTTPS.

Inbound: TLS 1.2+ with ECDHE key exchange and AEAD ciphers only. Outbound: verified TLS to the
vendor, optionally pinned to the SHA-256 of the vendor's SubjectPublicKeyInfo; the pin is
checked inside the handshake, before a single byte of the request is written.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import netaddr
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config.schema import HSTSConfig, TLSConfig
from gateway.core.errors import GatewayError, Reason, bad_request, redirect, refuse
from gateway.core.exchange import Exchange, SyncStage

#: TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites are all AEAD with (EC)DHE.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"

_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$")

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(
    tls: TLSConfig, cert_file: Path, key_file: Path, client_ca_file: Path | None
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class ReloadableServerTLS:
    """The listener's TLS context, whose certificate can be swapped whole (SIGHUP).

    A reload builds a fresh context from the files, so a broken or mismatched pair fails before
    anything changes, and a new key type fully replaces the old certificate. New handshakes are
    moved onto the newest context from the ClientHello callback; open connections keep theirs.
    """

    def __init__(self, tls: TLSConfig, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self._args = (tls, cert_file, key_file, client_ca_file)
        self.context = server_context(*self._args)
        self._current = self.context
        self.names = certificate_names(cert_file)
        self.context.sni_callback = self._select

    def _select(self, ssl_object: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if self._current is not self.context:
            ssl_object.context = self._current

    def reload(self) -> None:
        """Raise (and keep serving the current pair) if the files do not load as a pair."""
        self.use(self.prepare(*self._args))

    def prepare(
        self, tls: TLSConfig, cert_file: Path, key_file: Path, client_ca_file: Path | None
    ) -> PreparedTLS:
        """A context from these files (a config reload may name other files), not in use yet;
        raises when they do not load."""
        return PreparedTLS(
            (tls, cert_file, key_file, client_ca_file),
            server_context(tls, cert_file, key_file, client_ca_file),
            certificate_names(cert_file),
        )

    def use(self, prepared: PreparedTLS) -> None:
        """New handshakes get the prepared context from now on."""
        self._args = prepared.args
        self._current, self.names = prepared.context, prepared.names


@dataclass(frozen=True, slots=True)
class PreparedTLS:
    args: tuple[TLSConfig, Path, Path, Path | None]
    context: ssl.SSLContext
    names: frozenset[str]


def spki_sha256(der_certificate: bytes) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (the HPKP/curl ``sha256//`` form)."""
    cert = x509.load_der_x509_certificate(der_certificate)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class PinMismatch(ssl.SSLCertVerificationError):
    pass


def upstream_context(ca_file: Path | None, pins: Iterable[str] = ()) -> ssl.SSLContext:
    """A client context that verifies the vendor (system CAs unless ``ca_file``) and its pins."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    pin_set = frozenset(pins)
    if pin_set:

        class PinnedSSLObject(ssl.SSLObject):
            def do_handshake(self) -> None:
                super().do_handshake()  # raises SSLWantRead until the handshake is complete
                der = self.getpeercert(binary_form=True)
                if der is None or spki_sha256(der) not in pin_set:
                    raise PinMismatch("the vendor's public key does not match upstream.pin_sha256")

        ctx.sslobject_class = PinnedSSLObject
    return ctx


def hsts_value(hsts: HSTSConfig) -> str:
    value = f"max-age={hsts.max_age_s}"
    if hsts.include_subdomains:
        value += "; includeSubDomains"
    if hsts.preload:
        value += "; preload"
    return value


def security_headers(hsts: HSTSConfig) -> dict[str, str]:
    """Headers every response carries: errors, health checks and redirects included.

    ``Server`` replaces aiohttp's banner (Python and aiohttp versions) with a name that tells an
    attacker nothing about what to try.
    """
    return {
        "Strict-Transport-Security": hsts_value(hsts),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Server": "smsgw",
    }


def certificate_names(cert_file: Path) -> frozenset[str]:
    """Lower-case DNS names and IP addresses a certificate is valid for (its SANs, else its CN)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        names |= {
            str(a.value).lower() for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        }
    return frozenset(names)


def host_matches(host: str, names: frozenset[str]) -> bool:
    """RFC 6125: exact name, or a ``*.`` wildcard standing for exactly one left-most label."""
    host = host.lower().rstrip(".")
    if host in names:
        return True
    label, dot, rest = host.partition(".")
    return bool(dot and label and rest and f"*.{rest}" in names)


class HttpsPolicy:
    """Decides whether a request arrived over HTTPS, and what a plain-HTTP request gets.

    Without ``server.public_url`` a redirect goes to the request's Host only when that host is one
    of ``host_names`` (the certificate's names): anything else would let a client pick the target.
    """

    __slots__ = ("_action", "_host_names", "_https_port", "_offloaded", "_public_origin")

    def __init__(
        self,
        *,
        offloaded: bool,
        action: str,
        public_origin: str,
        https_port: Callable[[], int],
        host_names: Callable[[], frozenset[str]] = frozenset,
    ) -> None:
        self._offloaded = offloaded
        self._action = action
        self._public_origin = public_origin
        self._host_names = host_names
        self._https_port = https_port  # read when redirecting: port 0 is known once bound

    def is_https(self, *, tls: bool, peer_trusted: bool, forwarded_proto: Sequence[str] | str | None) -> bool:
        """Raises 400 when a trusted proxy sends more than one ``X-Forwarded-Proto`` value."""
        if not self._offloaded:
            return tls
        # Behind a load balancer, only the balancer's own word counts.
        if not peer_trusted or not forwarded_proto:
            return False
        values = [forwarded_proto] if isinstance(forwarded_proto, str) else list(forwarded_proto)
        if len(values) != 1 or "," in values[0]:
            raise bad_request("X-Forwarded-Proto must hold exactly one value")
        return values[0].strip().lower() == "https"

    def refuse(self, method: str, host: str | None, path_qs: str) -> GatewayError:
        """403 ``tls_required``, or a 308 to the HTTPS origin for GET/HEAD when configured."""
        if self._action == "redirect" and method in ("GET", "HEAD"):
            origin = self._public_origin or self._origin_from_host(host)
            if origin:
                return redirect(Reason.TLS_REQUIRED, "use HTTPS", origin + path_qs)
        return refuse(Reason.TLS_REQUIRED, "this gateway accepts HTTPS only")

    def _origin_from_host(self, host: str | None) -> str:
        if not host or not _HOST.match(host):
            return ""
        name = host[: host.index("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
        if not host_matches(name.strip("[]"), self._host_names()):
            return ""
        https_port = self._https_port()
        port = "" if https_port == 443 else f":{https_port}"
        return f"https://{name}{port}"


class RequireHttps(SyncStage):
    """Step 1 of the request path: plain HTTP gets 403 ``tls_required`` (or a 308 for GET/HEAD)."""

    name = "https"
    __slots__ = ("_policy", "_trusted")

    def __init__(self, policy: HttpsPolicy, is_trusted: Callable[[netaddr.IPAddress], bool]) -> None:
        self._policy = policy
        self._trusted = is_trusted

    def run_sync(self, ex: Exchange) -> None:
        request = ex.request
        transport = request.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        trusted = ex.peer is not None and self._trusted(ex.peer)
        if not self._policy.is_https(
            tls=tls, peer_trusted=trusted, forwarded_proto=request.headers.getall("X-Forwarded-Proto", ())
        ):
            raise self._policy.refuse(request.method, request.host, request.raw_path)
