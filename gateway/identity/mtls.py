"""Mutual TLS: the client certificate the handshake verified names the client.

With ``server.tls.client_ca_file`` every connection already carries a certificate from that CA
(the handshake refuses the rest). A route with ``auth = [..., "mtls"]`` then accepts it as the
credential: the ``[[client]]`` whose ``tls_subject`` equals the certificate's subject common
name, or one of its subjectAltName values (DNS name, URI, e-mail, IP address), is the caller.
DNS names and common names are compared without case. A certificate that names no client is
``unknown_certificate``; one that names two is ``ambiguous_certificate`` (never a guess).

Every request on such a connection "presents" a certificate, so list ``mtls`` last in a route's
``auth``: a token or signature sent with the request is then what decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from gateway.core.errors import Reason, refuse
from gateway.core.events import Detail
from gateway.core.exchange import Exchange
from gateway.identity.auth import AuthContext, Principal

__all__ = ["MtlsAuthenticator", "build_mtls", "certificate_names"]

_SAN_KINDS = frozenset({"DNS", "URI", "email", "IP Address"})


def peer_certificate(request: web.Request) -> dict[str, Any] | None:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    return cert or None


def certificate_names(cert: Mapping[str, Any]) -> list[str]:
    """The subject's common names and the subjectAltName values, as ``ssl`` decoded them."""
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    names += [value for kind, value in cert.get("subjectAltName", ()) if kind in _SAN_KINDS]
    return names


class MtlsAuthenticator:
    kind = "mtls"
    challenge = ""
    needs_body = False

    __slots__ = ("_subjects",)

    def __init__(self, subjects: Iterable[tuple[str, str]]) -> None:
        """``subjects`` are ``(tls_subject, client_id)``."""
        self._subjects = {subject.lower(): client_id for subject, client_id in subjects}

    def present(self, request: web.Request) -> bool:
        return peer_certificate(request) is not None

    async def authenticate(self, ex: Exchange) -> Principal:
        cert = peer_certificate(ex.request)
        if cert is None:
            raise refuse(
                Reason.UNAUTHENTICATED, "a valid credential is required", detail=Detail.NO_CERTIFICATE
            )
        matches = {
            (self._subjects[name.lower()], name)
            for name in certificate_names(cert)
            if name.lower() in self._subjects
        }
        clients = {client_id for client_id, _ in matches}
        if len(clients) != 1:
            detail = Detail.UNKNOWN_CERTIFICATE if not clients else Detail.AMBIGUOUS_CERTIFICATE
            raise refuse(Reason.UNAUTHENTICATED, "a valid credential is required", detail=detail)
        client_id, name = min(matches)
        return Principal(client_id, "mtls", None, name)


def build_mtls(ctx: AuthContext) -> MtlsAuthenticator:
    return MtlsAuthenticator((c.tls_subject, c.id) for c in ctx.config.clients if c.tls_subject)
