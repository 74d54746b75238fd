"""GTIN and PLU: parsing, normalisation, check digits, and what errors say."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from product_db.codes import (
    GTIN,
    PLU,
    InvalidCodeError,
    display_code,
    gtin_check_digit,
    normalise_code,
    parse_code,
)

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@st.composite
def valid_gtins(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from([8, 12, 13, 14]))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    return body + str(gtin_check_digit(body))


# Known real-world codes with their published check digits.
@pytest.mark.parametrize(
    ("code", "form", "gtin14"),
    [
        ("036000291452", "UPC-A", "00036000291452"),
        ("0036000291452", "EAN-13", "00036000291452"),
        ("4006381333931", "EAN-13", "04006381333931"),
        ("96385074", "EAN-8", "00000096385074"),
        ("10012345678902", "GTIN-14", "10012345678902"),
    ],
)
def test_known_gtins_parse_and_normalise(code: str, form: str, gtin14: str) -> None:
    gtin = GTIN.parse(code)
    assert gtin.form == form
    assert gtin.key == gtin14
    assert gtin.display == code
    assert str(gtin) == code


def test_upc_a_and_ean13_of_the_same_product_are_equal() -> None:
    assert GTIN.parse("036000291452") == GTIN.parse("0036000291452")
    assert len({GTIN.parse("036000291452"), GTIN.parse("00036000291452")}) == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("036000291453", "check digit is 3 but should be 2"),
        ("0360002914", "10 digits is neither"),
        ("03600029145a", "digits 0-9 only"),
        ("", "empty"),
        ("   ", "empty"),
        ("٠١٢٣٤٥٦٧", "digits 0-9 only"),  # Arabic-Indic digits are not barcode digits
        ("12345", "organic prefix"),
        ("123", "neither a PLU"),
    ],
)
def test_invalid_codes_name_the_code_and_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidCodeError) as info:
        parse_code(raw)
    assert reason in info.value.reason
    assert repr(raw) in str(info.value)
    assert info.value.code == raw


def test_non_string_codes_are_rejected_clearly() -> None:
    with pytest.raises(InvalidCodeError, match="expected a string of digits"):
        parse_code(None)
    with pytest.raises(InvalidCodeError, match="expected a string of digits"):
        parse_code(True)


def test_plu_conventional_and_organic() -> None:
    banana = PLU.parse("4011")
    organic = PLU.parse("94011")
    assert not banana.organic and organic.organic
    assert organic.base == banana.base == "4011"
    assert banana != organic  # different products, different prices
    assert parse_code(" 4011 ") == banana
    assert normalise_code("94011") == "94011"


def test_display_code_of_stored_keys() -> None:
    assert display_code("00000096385074") == "96385074"
    assert display_code("00036000291452") == "036000291452"
    assert display_code("04006381333931") == "4006381333931"
    assert display_code("10012345678902") == "10012345678902"
    assert display_code("4011") == "4011"


@given(valid_gtins())
def test_every_valid_gtin_round_trips(code: str) -> None:
    gtin = GTIN.parse(code)
    assert gtin.display == code
    assert gtin.key == code.zfill(14)
    assert GTIN.parse(gtin.key) == gtin
    assert parse_code(code) == gtin


@given(valid_gtins(), st.data())
def test_every_single_digit_error_is_caught(code: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(code) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != code[position]]))
    mutated = code[:position] + wrong + code[position + 1 :]
    with pytest.raises(InvalidCodeError, match="check digit"):
        GTIN.parse(mutated)


@given(valid_gtins(), st.data())
def test_detectable_adjacent_transpositions_are_caught(code: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(code) - 2))
    a, b = code[position], code[position + 1]
    # Weights 3 and 1 alternate, so swapping a and b changes the sum by 2*(a-b) mod 10; the
    # mod-10 check misses exactly the swaps where a == b or |a - b| == 5.
    detectable = a != b and abs(int(a) - int(b)) != 5
    mutated = code[:position] + b + a + code[position + 2 :]
    if detectable:
        with pytest.raises(InvalidCodeError, match="check digit"):
            GTIN.parse(mutated)
    else:
        assert GTIN.parse(mutated).key == mutated.zfill(14)


@given(st.from_regex(r"\A9?[0-9]{4}\Z"))
def test_every_valid_plu_round_trips(code: str) -> None:
    plu = PLU.parse(code)
    assert plu.key == code and str(plu) == code
    assert parse_code(code) == plu
    assert plu.organic == (len(code) == 5)
