"""Recipient parsing (strict E.164) and the per-client destination policy."""

from __future__ import annotations

import contextlib

import phonenumbers
import pytest

from gateway.core.errors import GatewayError, invalid_recipient
from gateway.recipients import phone
from gateway.recipients.phone import NUMBER_TYPES, DestinationPolicy, classify, parse_recipient

# Checked with phonenumbers.is_valid_number before being written here.
VALID = {
    "+37255512367": "EE",  # Estonian mobile
    "+37251234567": "EE",
    "+12015550123": "US",
    "+447400123456": "GB",  # UK mobile
    "+441212345678": "GB",
    "+4915123456789": "DE",  # German mobile
    "+4930123456": "DE",
}


@pytest.mark.parametrize(("number", "region"), sorted(VALID.items()))
def test_valid_numbers(number: str, region: str) -> None:
    dest = parse_recipient(number)
    assert (dest.raw, dest.e164, dest.region) == (number, number, region)
    assert dest.type in ("mobile", "fixed_line", "fixed_line_or_mobile")


@pytest.mark.parametrize(
    "raw",
    ["sms:+37255512367", "SMS:+37255512367", "whatsapp:+37255512367", "WhatsApp:+37255512367",
     "tel:+37255512367", "  +37255512367\t", " whatsapp: +37255512367 "],
)  # fmt: skip
def test_channel_prefix_and_whitespace(raw: str) -> None:
    dest = parse_recipient(raw)
    assert dest.e164 == "+37255512367"
    assert dest.region == "EE"
    assert dest.raw == raw


def test_non_geographic_number_has_no_region() -> None:
    dest = parse_recipient("+80012345678")  # international freephone, region "001"
    assert dest.e164 == "+80012345678"
    assert dest.region is None


INVALID = [
    "37255512367",  # no plus
    "+372555",  # too short
    "+123456",  # 6 digits
    "+3725551234",  # right shape, not a valid EE number
    "+3725551236a",  # letters
    "+372ABCDEFGH",
    "+372 5551 2367",  # spaces
    "+372-5551-2367",  # dashes
    "+(372)55512367",
    "+037255512367",  # leading zero
    "+0123456789",
    "+1234567890123456",  # 16 digits
    "+4915123456789012",
    "",
    "   ",
    "\t\n",
    "+",
    "++37255512367",
    "sms:sms:+37255512367",  # only one prefix is stripped
    "fax:+37255512367",
    "+" + "".join(chr(0xFF10 + int(d)) for d in "37255512367"),  # full-width digits
    "+" + "".join(chr(0x0660 + int(d)) for d in "37255512367"),  # Arabic-Indic digits
    "0037255512367",
    "+37255512367;ext=1",
    "+" + "1" * 1000,
]


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_numbers(raw: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_recipient(raw)
    err = info.value
    assert err.status == 422
    assert err.code == "invalid_recipient"
    if raw.strip():
        assert raw.strip() not in err.message
        assert raw.strip() not in str(err)
    assert err.message == invalid_recipient().message  # fixed text, whatever the input


@pytest.mark.parametrize("raw", [None, 37255512367, b"+37255512367"])
def test_non_string_is_invalid(raw: object) -> None:
    with pytest.raises(GatewayError) as info:
        parse_recipient(raw)  # type: ignore[arg-type]
    assert info.value.code == "invalid_recipient"


# --- policy -------------------------------------------------------------------------------

EE = parse_recipient("+37255512367")
US = parse_recipient("+12015550123")
DE = parse_recipient("+4915123456789")
NONGEO = parse_recipient("+80012345678")


def test_no_countries_allows_no_destination() -> None:
    """Closed by default: a client must name its countries (check-config refuses one that may
    send without them; this is the floor under that)."""
    policy = DestinationPolicy()
    for dest in (EE, US, DE, NONGEO):
        with pytest.raises(GatewayError) as info:
            policy.check([dest], ())
        assert (info.value.status, info.value.code) == (403, "destination_not_allowed")
    policy.check([], ())


def test_any_country_is_every_geographic_country_only() -> None:
    policy = DestinationPolicy(countries=["*"])
    policy.check([EE, US, DE], ("AnySender",))
    for number in ("+881612345678", "+870301234567", "+8823421234", "+883510012345", "+80012345678"):
        with pytest.raises(GatewayError) as info:
            policy.check([EE, parse_recipient(number)], ())
        err = info.value
        assert (err.status, err.code) == (403, "destination_not_allowed")
        assert "recipient 2 is a non-geographic number" in err.message
        assert number not in err.message
        assert err.detail == f"non_geographic:{number[:4]}"


def test_a_non_geographic_calling_code_is_allowed_where_named() -> None:
    iridium, inmarsat = parse_recipient("+881612345678"), parse_recipient("+870301234567")
    assert (iridium.region, iridium.network, iridium.type) == (None, "+881", "mobile")
    assert (inmarsat.region, inmarsat.network) == (None, "+870")
    assert EE.network is None
    policy = DestinationPolicy(countries=["EE", "+881"])
    policy.check([EE, iridium], ())
    with pytest.raises(GatewayError):
        policy.check([inmarsat], ())
    with pytest.raises(GatewayError):
        policy.check([US], ())


def test_countries_allowed_and_denied() -> None:
    policy = DestinationPolicy(countries=["ee", "US"])
    assert policy.countries == frozenset({"EE", "US"})
    policy.check([EE, US], ())
    with pytest.raises(GatewayError) as info:
        policy.check([EE, DE], ())
    err = info.value
    assert (err.status, err.code) == (403, "destination_not_allowed")
    assert "DE" not in err.message
    assert "+49" not in err.message


def test_unknown_region_denied_when_countries_set() -> None:
    with pytest.raises(GatewayError) as info:
        DestinationPolicy(countries=["EE"]).check([NONGEO], ())
    assert info.value.code == "destination_not_allowed"


def test_senders() -> None:
    policy = DestinationPolicy(countries=["*"], senders=["MyBank", "+15005550006"])
    policy.check([EE], ("MyBank",))
    policy.check([EE], ("+15005550006",))
    for senders in [("mybank",), ("MyBank ",), ("Other",), ("",), (), ("MyBank", "Other")]:
        with pytest.raises(GatewayError) as info:
            policy.check([EE], senders)
        assert (info.value.status, info.value.code) == (403, "sender_not_allowed")
    # Several messages, every sender allowed; a message naming none uses the vendor's default.
    policy.check([EE], ("MyBank", "+15005550006"))
    with pytest.raises(GatewayError):
        policy.check([EE], ("MyBank",), default_sender=True)


def test_country_checked_before_sender() -> None:
    policy = DestinationPolicy(countries=["EE"], senders=["MyBank"])
    with pytest.raises(GatewayError) as info:
        policy.check([DE], ("Other",))
    assert info.value.code == "destination_not_allowed"
    policy.check([EE], ("MyBank",))


@pytest.mark.parametrize("code", ["EST", "E", "", "E1", "Ä1", "ÄÖ", " EE", "001", "ee ", "+44", "+8", "**"])
def test_bad_country_code_rejected(code: str) -> None:
    with pytest.raises(ValueError):
        DestinationPolicy(countries=[code])


# -- one pass over phonenumbers' metadata answers as its public calls do ------------------------------


def test_classify_agrees_with_the_public_calls() -> None:
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in NUMBER_TYPES.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(example)
                # one digit more and one less: mostly invalid, sometimes another type
                nsn = phonenumbers.national_significant_number(example)
                for other in (nsn + "1", nsn[:-1]):
                    numbers.append(phonenumbers.parse(f"+{example.country_code}{other}", None))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.append(example)
    assert len(numbers) > 3000
    for number in numbers:
        region, kind = classify(number)
        valid = phonenumbers.is_valid_number(number)
        assert (kind != phonenumbers.PhoneNumberType.UNKNOWN) == valid, number
        assert region == phonenumbers.region_code_for_number(number), number
        if valid:
            assert kind == phonenumbers.number_type(number), number


def test_a_number_parsed_again_from_the_cache_is_the_same_destination() -> None:
    phone._KNOWN.clear()
    first = [
        parse_recipient(n) for n in ("+37255512367", "sms:+12015550123", "+80012345678", "+4915123456789")
    ]
    assert len(phone._KNOWN) == 4
    again = [
        parse_recipient(n) for n in ("+37255512367", "sms:+12015550123", "+80012345678", "+4915123456789")
    ]
    assert again == first
    for raw in ("+3725551236", "+99912345678"):  # invalid: refused from the cache too
        for _ in range(2):
            with pytest.raises(GatewayError):
                parse_recipient(raw)


def test_one_client_never_hits_the_parse_cache_another_filled() -> None:
    """A cached number answers faster: the cache is kept apart per client, so a client cannot
    learn by timing which numbers another client sent to."""
    phone._KNOWN.clear()
    parse_recipient("+37255512367", scope="billing")
    parse_recipient("+37255512367", scope="billing")
    assert len(phone._KNOWN) == 1
    assert parse_recipient("+37255512367", scope="marketing") == parse_recipient(
        "+37255512367", scope="billing"
    )
    assert len(phone._KNOWN) == 2


def test_the_parse_cache_holds_no_phone_number() -> None:
    """Keys are keyed hashes, values are (region, type, network): no number outlives its request,
    not even one whose canonical form differs from what the client sent."""
    phone._KNOWN.clear()
    numbers = ["+37255512367", "+12015550123", "+4915123456789", "+3725551236"]
    for raw in numbers:
        with contextlib.suppress(GatewayError):
            parse_recipient(raw)
    assert parse_recipient("+54111523456789").e164 == "+5491123456789"  # not cached: parsed each time
    assert parse_recipient("+54111523456789").e164 == "+5491123456789"
    assert len(phone._KNOWN) == len(numbers)
    held = repr(list(phone._KNOWN.items())) + repr(list(phone._KNOWN.keys()))
    for number in [*numbers, "+54111523456789", "+5491123456789"]:
        digits = number.lstrip("+")
        assert digits[-7:] not in held
        assert digits[-7:].encode() not in b"".join(phone._KNOWN.keys())
    assert all(isinstance(key, bytes) and len(key) == 16 for key in phone._KNOWN)


def test_the_parse_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    phone._KNOWN.clear()
    monkeypatch.setattr(phone, "_CACHE_SIZE", 3)
    for n in range(10):
        parse_recipient(f"+3725551{n:04d}")
    assert len(phone._KNOWN) == 3
