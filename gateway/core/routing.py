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

from gateway.core.errors import Reason, bad_request, refuse
from gateway.core.exchange import SyncStage

if TYPE_CHECKING:
    from gateway.core.exchange import Exchange

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
            raise refuse(Reason.METHOD_NOT_ALLOWED, "this route does not accept the method", {"Allow": allow})
        raise refuse(Reason.ROUTE_NOT_FOUND, "no route matches this path")


def overlap_example(a: str, b: str) -> str | None:
    """A request path that both templates match, or ``None`` when no path matches both.

    With first-match routing, a later route that overlaps an earlier one is shadowed for the
    paths they share, so which policy applies would depend on file order. The answer is exact:
    both templates are read as automata (a literal character, or a parameter: one or more
    unreserved characters, never ``/``) and their product is searched for a common path. When
    the literals hold only unreserved characters this is the rule "equal segment counts; literal
    segments equal; a literal matches the other's segment; two segments with parameters have
    compatible literal prefixes and suffixes".
    """
    ta, tb = _tokens(a), _tokens(b)
    start = ((0, False), (0, False))
    parents: dict[tuple[_State, _State], tuple[tuple[_State, _State], str] | None] = {start: None}
    queue = [start]
    for pair in queue:  # breadth first: the example found is a shortest one
        sa, sb = pair
        if _accepts(ta, sa) and _accepts(tb, sb):
            chars: list[str] = []
            step = parents[pair]
            while step is not None:
                pair, char = step
                chars.append(char)
                step = parents[pair]
            return "".join(reversed(chars))
        for label_a, next_a in _moves(ta, sa):
            for label_b, next_b in _moves(tb, sb):
                char = _meet(label_a, label_b)
                if char is not None and (next_a, next_b) not in parents:
                    parents[(next_a, next_b)] = ((sa, sb), char)
                    queue.append((next_a, next_b))
    return None


#: A position in a template's tokens, and whether a parameter there has read a character.
_State = tuple[int, bool]
_ANY = ""  # a token or label standing for any one unreserved character
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_~.-")


def _tokens(text: str) -> list[str]:
    """One token per literal character; ``_ANY`` for each parameter."""
    out: list[str] = []
    pos = 0
    for match in _PARAM.finditer(text):
        out.extend(text[pos : match.start()])
        out.append(_ANY)
        pos = match.end()
    out.extend(text[pos:])
    return out


def _moves(tokens: list[str], state: _State) -> list[tuple[str, _State]]:
    index, inside = state
    moves: list[tuple[str, _State]] = []
    if inside:  # a parameter that has one character may take more, or end here
        moves.append((_ANY, (index, True)))
        index += 1
    if index < len(tokens):
        token = tokens[index]
        moves.append((_ANY, (index, True)) if token == _ANY else (token, (index + 1, False)))
    return moves


def _accepts(tokens: list[str], state: _State) -> bool:
    index, inside = state
    return index + (1 if inside else 0) == len(tokens)


def _meet(a: str, b: str) -> str | None:
    """A character both labels accept (``x`` stands for any unreserved one), else ``None``."""
    if a == _ANY and b == _ANY:
        return "x"
    if a == _ANY:
        return b if b in _UNRESERVED else None
    if b == _ANY:
        return a if a in _UNRESERVED else None
    return a if a == b else None


def route_shape(path: str) -> str:
    """Two templates with the same shape (``/a/{x}`` and ``/a/{y}``) serve the same paths."""
    return _PARAM.sub("{}", path)


def check_normal_form(raw_path: str) -> None:
    """Refuse dot segments, empty segments and encoded separators (path confusion)."""
    if not raw_path.startswith("/") or _NOT_NORMAL.search(raw_path):
        raise bad_request("the request path is not in normal form")


class RouteRequest(SyncStage):
    """Deny by default: the request must match a route's path and method (404 / 405)."""

    name = "route"
    __slots__ = ("_router",)

    def __init__(self, router: Router[Any]) -> None:
        self._router = router

    def run_sync(self, ex: Exchange) -> None:
        match = self._router.match(ex.method, ex.request.raw_path.partition("?")[0])
        ex.route = match.target
        ex.params = match.params
