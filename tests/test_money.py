"""Amounts as people write them, parsed into Decimal or refused with a plain reason."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recon import money
from recon.money import AmbiguousAmount, AmountError, parse_amount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234.5", "1234.5"),
        ("80.10", "80.10"),
        ("1 234,50", "1234.50"),
        ("1\u00a0234,50", "1234.50"),  # no-break space
        ("1\u202f234,50", "1234.50"),  # narrow no-break space
        ("1,234.50", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1,234,567", "1234567"),
        ("1.234.567,89", "1234567.89"),
        ("1234,5", "1234.5"),
        ("0,123", "0.123"),  # a thousands group cannot start with 0
        ("1234.567", "1234.567"),  # four digits before: not a thousands group
        ("1 234.50", "1234.50"),
        ("  15  ", "15"),
        ("0.01", "0.01"),
    ],
)
def test_parse_amount_accepts_the_usual_ways_of_writing(text: str, expected: str) -> None:
    amount = parse_amount(text)
    assert amount == Decimal(expected)
    assert str(amount) == expected  # the digits as written: 80.10 stays 80.10


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1e3", "'1e3' is in scientific notation; write the amount in full digits"),
        ("1E+03", "'1E+03' is in scientific notation; write the amount in full digits"),
        ("NaN", "'NaN' is not a number"),
        ("inf", "'inf' is not a number"),
        ("-Infinity", "'-Infinity' is not a number"),
        ("$5", "'$5' has a currency sign; write only the number"),
        ("5 €", "'5 €' has a currency sign; write only the number"),
        ("EUR 5", "'EUR 5' has a currency code; write only the number"),
        ("-5", "'-5' is negative; the amount must be greater than zero"),
        ("(5.00)", "'(5.00)' is negative; the amount must be greater than zero"),
        ("+5", "'+5' has a sign; write the amount without one"),
        ("0", "'0' is zero; the amount must be greater than zero"),
        ("0,00", "'0,00' is zero; the amount must be greater than zero"),
        ("12 34", "'12 34' has thousands separators in the wrong places"),
        ("1.2.3", "'1.2.3' has thousands separators in the wrong places"),
        ("1,2,3", "'1,2,3' has thousands separators in the wrong places"),
        ("5.", "'5.' has no digits after the decimal separator"),
        (".5", "'.5' has no digits before the decimal separator"),
        ("five", "'five' is not a number like 1234.50"),
        ("1234567890123456", "'1234567890123456' is too large"),
        ("", "the amount is blank"),
    ],
)
def test_parse_amount_refuses_with_a_plain_reason(text: str, problem: str) -> None:
    with pytest.raises(AmountError) as caught:
        parse_amount(text)
    assert str(caught.value) == problem


@pytest.mark.parametrize(
    "text", ["1,234", "1.234", "12,345", "999.000", "1,000", "1.000", "2.500", "100,000", " 1,000 "]
)
def test_one_separator_before_three_digits_is_ambiguous(text: str) -> None:
    with pytest.raises(AmbiguousAmount) as caught:
        parse_amount(text)
    message = str(caught.value)
    assert "could be read with" in message and "as thousands or as decimal separator" in message
    assert message.endswith("say which separator is decimal with --decimal . or --decimal ,")


def test_the_ambiguity_message_shows_both_readings() -> None:
    with pytest.raises(AmbiguousAmount) as caught:
        parse_amount("1,000")
    assert str(caught.value) == (
        "'1,000' could be read with ',' as thousands or as decimal separator (1000 or 1.000); "
        "write it unambiguously or say which separator is decimal with --decimal . or --decimal ,"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 234,50", "1234.50"),
        ("1,234.50", "1234.50"),
        ("1.234,50", "1234.50"),
        ("1234,5", "1234.5"),
        ("1234.50", "1234.50"),
        ("1,000.00", "1000.00"),
        ("1.000,00", "1000.00"),
        ("1,000,000", "1000000"),
        ("1.000.000", "1000000"),
        ("1 000", "1000"),
        ("12,50", "12.50"),
        ("1,0000", "1.0000"),
        ("1234,000", "1234.000"),  # four digits before: cannot be a thousands group
    ],
)
def test_values_unambiguous_by_themselves_need_no_decimal(text: str, expected: str) -> None:
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "decimal", "expected"),
    [
        ("1,234", ".", "1234"),
        ("1,234", ",", "1.234"),
        ("1.234", ",", "1234"),
        ("1.234", ".", "1.234"),
        ("1,5", ",", "1.5"),
        ("1,000", ".", "1000"),
        ("1,000", ",", "1.000"),
        ("1.000", ".", "1.000"),  # with --decimal . `1.000` is one
        ("1.000", ",", "1000"),
        ("2.500", ",", "2500"),
    ],
)
def test_decimal_settles_the_ambiguity(text: str, decimal: str, expected: str) -> None:
    assert parse_amount(text, decimal) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "decimal"), [("1234,5", "."), ("1234.5", ","), ("1,234.50", ","), ("1,5", ".")]
)
def test_an_amount_against_the_stated_decimal_separator_is_refused(text: str, decimal: str) -> None:
    with pytest.raises(AmountError, match=f"does not use the decimal separator '\\{decimal}'"):
        parse_amount(text, decimal)


def test_decimal_must_be_dot_or_comma() -> None:
    with pytest.raises(ValueError, match="must be '.' or ','"):
        parse_amount("1", ";")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (80.1, "80.1"),
        (123.0, "123"),
        (0.1 + 0.2, "0.3"),
        (1e20, "100000000000000000000"),
        (1e-7, "0.0000001"),
    ],
)
def test_excel_number_is_what_excel_shows(value: float, text: str) -> None:
    assert money.excel_number(value) == text


def test_decimals_of_ignores_trailing_zeros() -> None:
    assert money.decimals_of(Decimal("80.50")) == 1
    assert money.decimals_of(Decimal("100.00")) == 0
    assert money.decimals_of(Decimal("1E+3")) == 0


def test_currency_helpers() -> None:
    assert money.allowed_decimals("EUR") == 2
    assert money.allowed_decimals("JPY") == 0
    assert money.allowed_decimals("BHD") == 2  # three minor digits, capped by the provider
    assert (
        money.is_currency("USD") and not money.is_currency("XXX") and not money.is_currency("EURO")
    )
    assert money.json_number(Decimal("80.50")) == "80.50"


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999"), places=2))
def test_every_grouping_of_a_positive_amount_reads_back(amount: Decimal) -> None:
    plain = format(amount, "f")
    integer, _, fraction = plain.partition(".")
    grouped = f"{int(integer):,}"
    assert parse_amount(f"{grouped}.{fraction}" if "," in grouped else plain) == amount
    assert parse_amount(f"{grouped.replace(',', ' ')},{fraction}") == amount
    assert parse_amount(f"{grouped.replace(',', '.')},{fraction}", ",") == amount


@given(st.text(max_size=30))
def test_parse_amount_raises_only_amount_error(text: str) -> None:
    try:
        amount = parse_amount(text)
    except AmountError:
        return
    assert amount > 0 and amount.is_finite()


@given(
    st.integers(min_value=1, max_value=999),
    st.integers(min_value=0, max_value=999),
    st.sampled_from([".", ","]),
)
def test_every_separator_before_exactly_three_digits_needs_decimal(
    head: int, tail: int, sep: str
) -> None:
    text = f"{head}{sep}{tail:03d}"
    with pytest.raises(AmbiguousAmount):
        parse_amount(text)
    assert parse_amount(text, sep) == Decimal(f"{head}.{tail:03d}")
    assert parse_amount(text, "," if sep == "." else ".") == Decimal(f"{head}{tail:03d}")
