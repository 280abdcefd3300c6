"""Deny-by-default routing over path templates such as ``/2010-04-01/Accounts/{account}/Messages.json``.

Templates are compiled once. Matching is done on the raw path (what the vendor would see), and
a request path that is not in normal form is refused instead of being guessed at: the gateway
must never approve one path while the vendor resolves another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gateway.errors import GatewayError, bad_request

if TYPE_CHECKING:
    from gateway.exchange import Exchange

T = TypeVar("T")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Characters a path parameter may hold: RFC 3986 unreserved, so no encoding tricks pass through.
_PARAM_VALUE = r"[A-Za-z0-9_~.-]+"
_LITERAL = re.compile(r"^[A-Za-z0-9_~.\-/!$&'()*+,;=:@]*$")
_BAD_SEGMENTS = frozenset({".", ".."})
_NOT_NORMAL = re.compile(r"//|\\|%(?:2[fFeE]|5[cC]|00)|(?:^|/)\.\.?(?:/|$)|[\x00-\x20\x7f]")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PathTemplate:
    text: str
    pattern: re.Pattern[str]
    params: tuple[str, ...]

    @classmethod
    def compile(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise TemplateError("path must start with '/'")
        if "?" in text or "#" in text:
            raise TemplateError("path must not contain a query or fragment")
        if "//" in text or any(seg in _BAD_SEGMENTS for seg in text.split("/")):
            raise TemplateError("path must not contain empty, '.' or '..' segments")
        regex, params, pos = ["^"], [], 0
        for match in _PARAM.finditer(text):
            literal = text[pos : match.start()]
            if not _LITERAL.match(literal):
                raise TemplateError(f"path has characters that need encoding in {literal!r}")
            regex.append(re.escape(literal))
            name = match[1]
            if name in params:
                raise TemplateError(f"path parameter {{{name}}} appears twice")
            params.append(name)
            regex.append(f"(?P<{name}>{_PARAM_VALUE})")
            pos = match.end()
        tail = text[pos:]
        if not _LITERAL.match(tail) or "{" in tail or "}" in tail:
            raise TemplateError("path has an unbalanced '{' or '}' or characters that need encoding")
        regex.append(re.escape(tail))
        regex.append("$")
        return cls(text, re.compile("".join(regex)), tuple(params))

    def render(self, params: Mapping[str, str]) -> str:
        return _PARAM.sub(lambda m: params[m[1]], self.text)


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    target: T
    template: PathTemplate
    params: Mapping[str, str]


class Router(Generic[T]):
    """First match wins among routes that accept the method; 405 only when no route does."""

    def __init__(self, entries: Iterable[tuple[str, Iterable[str], T]]) -> None:
        self._entries: list[tuple[PathTemplate, frozenset[str], T]] = []
        seen: dict[tuple[str, str], T] = {}
        for path, methods, target in entries:
            template = PathTemplate.compile(path)
            method_set = frozenset(m.upper() for m in methods)
            shape = route_shape(path)
            for method in method_set:
                if (shape, method) in seen:
                    raise TemplateError(f"{method} {path} is already served by another route")
                seen[(shape, method)] = target
            self._entries.append((template, method_set, target))

    def match(self, method: str, raw_path: str) -> Match[T]:
        check_normal_form(raw_path)
        allowed: set[str] = set()
        for template, methods, target in self._entries:
            found = template.pattern.match(raw_path)
            if found is None:
                continue
            if method in methods:
                return Match(target, template, found.groupdict())
            allowed |= methods
        if allowed:
            allow = ", ".join(sorted(allowed))
            raise GatewayError(
                405, "method_not_allowed", "this route does not accept the method", {"Allow": allow}
            )
        raise GatewayError(404, "route_not_found", "no route matches this path")


def route_shape(path: str) -> str:
    """Two templates with the same shape (``/a/{x}`` and ``/a/{y}``) serve the same paths."""
    return _PARAM.sub("{}", path)


def check_normal_form(raw_path: str) -> None:
    """Refuse dot segments, empty segments and encoded separators (path confusion)."""
    if not raw_path.startswith("/") or _NOT_NORMAL.search(raw_path):
        raise bad_request("the request path is not in normal form")


class RouteRequest:
    """Deny by default: the request must match a route's path and method (404 / 405)."""

    name = "route"
    __slots__ = ("_router",)

    def __init__(self, router: Router[Any]) -> None:
        self._router = router

    async def run(self, ex: Exchange) -> None:
        match = self._router.match(ex.method, ex.request.raw_path.partition("?")[0])
        ex.route = match.target
        ex.params = match.params
