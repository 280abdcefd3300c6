"""gateway/core/routing.py: path templates, the router and the normal form of request paths."""

from __future__ import annotations

import pytest

from gateway.core.errors import GatewayError
from gateway.core.routing import PathTemplate, Router, TemplateError, check_normal_form, route_shape

# ============================================================================================
# routing: path templates
# ============================================================================================


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("/", ()),
        ("/v1/messages", ()),
        ("/2010-04-01/Accounts/{account}/Messages.json", ("account",)),
        ("/v1/{a}/{b}", ("a", "b")),
        ("/a/{x}.json", ("x",)),
        ("/a/{x}-{y}", ("x", "y")),
        ("/a:b@c/~d_e!$&'()*+,;=", ()),
        ("/a/..b/c.", ()),
    ],
)
def test_template_compiles(text: str, params: tuple[str, ...]) -> None:
    template = PathTemplate.compile(text)
    assert template.text == text
    assert template.params == params


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("v1/messages", id="no-leading-slash"),
        pytest.param("/a?b=1", id="query"),
        pytest.param("/a#frag", id="fragment"),
        pytest.param("//a", id="leading-double-slash"),
        pytest.param("/a//b", id="empty-segment"),
        pytest.param("/a/./b", id="dot-segment"),
        pytest.param("/a/../b", id="dotdot-segment"),
        pytest.param("/a/.", id="trailing-dot"),
        pytest.param("/a/..", id="trailing-dotdot"),
        pytest.param("/a/{x", id="unclosed-brace"),
        pytest.param("/a/x}", id="stray-close-brace"),
        pytest.param("/a/{x}}", id="extra-close-brace"),
        pytest.param("/a/{{x}", id="extra-open-brace"),
        pytest.param("/a/{}", id="empty-param"),
        pytest.param("/a/{1x}", id="param-name-digit-first"),
        pytest.param("/a/{x-y}", id="param-name-dash"),
        pytest.param("/a/{x}/{x}", id="duplicate-param"),
        pytest.param("/a b", id="space"),
        pytest.param("/a%20b", id="percent"),
        pytest.param("/a\\b", id="backslash"),
        pytest.param('/a"b', id="quote"),
        pytest.param("/a<b>", id="angle"),
        pytest.param("/caf\u00e9", id="non-ascii"),
        pytest.param("/a/{x}/b c", id="bad-tail-after-param"),
    ],
)
def test_template_is_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.compile(text)


def test_template_error_is_a_value_error() -> None:
    assert issubclass(TemplateError, ValueError)


def test_template_render_fills_params() -> None:
    template = PathTemplate.compile("/2010-04-01/Accounts/{account}/Messages/{sid}.json")
    assert template.render({"account": "AC1", "sid": "SM9"}) == "/2010-04-01/Accounts/AC1/Messages/SM9.json"
    assert PathTemplate.compile("/v1/sms").render({}) == "/v1/sms"


@pytest.mark.parametrize(
    "value",
    ["abc", "AC0123", "a.b", "a-b_c~d", "..b"],
)
def test_param_matches_unreserved_characters(value: str) -> None:
    found = PathTemplate.compile("/m/{x}").pattern.match(f"/m/{value}")
    assert found is not None
    assert found["x"] == value


@pytest.mark.parametrize("value", ["%41", "a b", "a/b", "a%2Fb", "a:b", "a@b", "a+b", "", "a?b"])
def test_param_does_not_match_other_characters(value: str) -> None:
    assert PathTemplate.compile("/m/{x}").pattern.match(f"/m/{value}") is None


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/a/{x}/b/{y}", "/a/{}/b/{}"),
        ("/a/{account}", "/a/{}"),
        ("/v1/sms", "/v1/sms"),
    ],
)
def test_route_shape(path: str, shape: str) -> None:
    assert route_shape(path) == shape


def test_same_shape_means_same_route_shape() -> None:
    assert route_shape("/a/{x}") == route_shape("/a/{y}")


# ============================================================================================
# routing: the router
# ============================================================================================


def test_router_returns_target_template_and_params() -> None:
    router = Router([("/2010-04-01/Accounts/{account}/Messages.json", ["POST"], "send")])
    match = router.match("POST", "/2010-04-01/Accounts/AC42/Messages.json")
    assert match.target == "send"
    assert match.template.text == "/2010-04-01/Accounts/{account}/Messages.json"
    assert dict(match.params) == {"account": "AC42"}


def test_router_methods_are_upper_cased_at_build_time() -> None:
    router = Router([("/x", ["post"], 1)])
    assert router.match("POST", "/x").target == 1


def test_router_first_match_wins() -> None:
    router = Router([("/a/{x}", ["POST"], "param"), ("/a/b", ["POST"], "literal")])
    assert router.match("POST", "/a/b").target == "param"
    router = Router([("/a/b", ["POST"], "literal"), ("/a/{x}", ["POST"], "param")])
    assert router.match("POST", "/a/b").target == "literal"
    assert router.match("POST", "/a/c").target == "param"


def test_router_skips_a_path_match_with_the_wrong_method() -> None:
    router = Router([("/a/{x}", ["GET"], "get"), ("/a/b", ["POST"], "post")])
    assert router.match("POST", "/a/b").target == "post"


@pytest.mark.parametrize("path", ["/nope", "/a", "/a/b/c", "/m/%41", "/m/a/b"])
def test_router_unknown_path_is_404(path: str) -> None:
    router = Router([("/a/b", ["POST"], 1), ("/m/{x}", ["POST"], 2)])
    with pytest.raises(GatewayError) as err:
        router.match("POST", path)
    assert err.value.status == 404
    assert err.value.code == "route_not_found"


def test_router_wrong_method_is_405_with_union_allow() -> None:
    router = Router(
        [
            ("/a/{x}", ["GET"], 1),
            ("/a/b", ["PUT", "delete"], 2),
            ("/a/c", ["PATCH"], 3),  # path does not match /a/b: not in Allow
            ("/z", ["POST"], 4),
        ]
    )
    with pytest.raises(GatewayError) as err:
        router.match("POST", "/a/b")
    assert err.value.status == 405
    assert err.value.code == "method_not_allowed"
    assert err.value.headers["Allow"] == "DELETE, GET, PUT"


def test_router_refuses_same_shape_and_method_twice() -> None:
    with pytest.raises(TemplateError):
        Router([("/a/{x}", ["POST"], 1), ("/a/{y}", ["GET", "post"], 2)])


def test_router_allows_same_shape_with_other_methods() -> None:
    router = Router([("/a/{x}", ["POST"], 1), ("/a/{y}", ["GET"], 2)])
    assert router.match("GET", "/a/z").target == 2
    assert router.match("POST", "/a/z").target == 1


def test_router_refuses_a_bad_template() -> None:
    with pytest.raises(TemplateError):
        Router([("/a/../b", ["POST"], 1)])


@pytest.mark.parametrize("path", ["/m/a b", "/m/..", "/m/%2e%2e"])
def test_router_checks_normal_form_before_matching(path: str) -> None:
    router = Router([("/m/{x}", ["POST"], 1)])
    with pytest.raises(GatewayError) as err:
        router.match("POST", path)
    assert (err.value.status, err.value.code) == (400, "bad_request")


# ============================================================================================
# routing: normal form of the request path
# ============================================================================================


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param("a/b", id="relative"),
        pytest.param("*", id="asterisk"),
        pytest.param("//a", id="leading-double-slash"),
        pytest.param("/a//b", id="double-slash"),
        pytest.param("/a/b//", id="trailing-double-slash"),
        pytest.param("/a\\b", id="backslash"),
        pytest.param("/a%2fb", id="enc-slash-lower"),
        pytest.param("/a%2Fb", id="enc-slash-upper"),
        pytest.param("/a%5cb", id="enc-backslash-lower"),
        pytest.param("/a%5Cb", id="enc-backslash-upper"),
        pytest.param("/a/%2e%2e/b", id="enc-dot-lower"),
        pytest.param("/a/%2E/b", id="enc-dot-upper"),
        pytest.param("/a%2e", id="enc-dot-anywhere"),
        pytest.param("/a%00", id="enc-nul"),
        pytest.param("/./a", id="leading-dot-segment"),
        pytest.param("/a/./b", id="dot-segment"),
        pytest.param("/a/../b", id="dotdot-segment"),
        pytest.param("/a/..", id="trailing-dotdot"),
        pytest.param("/a/.", id="trailing-dot"),
        pytest.param("/..", id="root-dotdot"),
        pytest.param("/a b", id="space"),
        pytest.param("/a\tb", id="tab"),
        pytest.param("/a\nb", id="newline"),
        pytest.param("/a\rb", id="cr"),
        pytest.param("/a\x00b", id="nul"),
        pytest.param("/a\x1fb", id="unit-sep"),
        pytest.param("/a\x7fb", id="del"),
    ],
)
def test_normal_form_refused(path: str) -> None:
    with pytest.raises(GatewayError) as err:
        check_normal_form(path)
    assert (err.value.status, err.value.code) == (400, "bad_request")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/a",
        "/a/",
        "/a/..b",
        "/a/b..",
        "/a/b.json",
        "/.well-known/x",
        "/a/%41",
        "/2010-04-01/Accounts/AC1/Messages.json",
        "/a:b@c;d=e",
    ],
)
def test_normal_form_accepted(path: str) -> None:
    check_normal_form(path)
