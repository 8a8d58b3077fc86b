"""Money as Decimal: currency decimals, and amounts written as exact JSON numbers."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from functools import cache

import iso4217

# The provider accepts at most two decimal places whatever the currency (API.md).
PROVIDER_DECIMALS = 2


@cache
def currency_decimals(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 code; ValueError for a code that is not one."""
    exponent = iso4217.Currency(code).exponent
    if exponent is None:  # XAU, XXX and friends: no minor unit, not a payment currency
        raise ValueError(f"{code!r} is not a currency with minor units")
    return int(exponent)


def is_currency(code: str) -> bool:
    try:
        currency_decimals(code)
    except ValueError:
        return False
    return True


def allowed_decimals(code: str) -> int:
    """Decimals an amount in this currency may carry: the currency's, capped by the provider's."""
    return min(currency_decimals(code), PROVIDER_DECIMALS)


def quantize(amount: Decimal, code: str) -> Decimal:
    """The amount with exactly the currency's decimals, for display and totals."""
    return amount.quantize(Decimal(1).scaleb(-currency_decimals(code)))


def json_number(amount: Decimal) -> str:
    """An exact JSON number for a Decimal: `80` stays `80`, `80.50` stays `80.50`, never `8E+1`."""
    if not amount.is_finite():
        raise ValueError(f"{amount} is not a finite amount")
    return format(amount, "f")


# --- Parsing amounts as people write them -------------------------------------------------------

# Separators a person may use to group thousands: space, no-break space, narrow and thin spaces.
_SPACES = " \u00a0\u202f\u2009"
# Patterns for vectorised fast paths (pandas .str.fullmatch) as well as for the parser itself.
PLAIN_AMOUNT = r"[0-9]{1,15}(?:\.[0-9]{1,15})?"  # 1234 or 1234.50: nothing to interpret
AMBIGUOUS_DOT = r"[1-9][0-9]{0,2}\.[0-9]{3}"  # 1.234: thousands or decimal?
ZERO_AMOUNT = r"0+(?:\.0+)?"
_PLAIN = re.compile(PLAIN_AMOUNT)
_ALLOWED = re.compile(r"[0-9.," + _SPACES + r"]+")
_SPACE_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:[" + _SPACES + r"][0-9]{3})+")
# Integer digits an amount may have: far above any hold, far below float-like nonsense.
MAX_INTEGER_DIGITS = 15
DECIMAL_SEPARATORS = (".", ",")


class AmountError(ValueError):
    """An amount that is not a plain positive number; the message says why, in plain words."""


class AmbiguousAmount(AmountError):
    """`1,234` or `1.234`: thousands or decimal separator; the value alone does not say which."""


def _grouped(integer: str, sep: str) -> bool:
    """True when `integer` is digits grouped by threes with `sep` (1,234,567)."""
    head, *groups = integer.split(sep)
    return (
        bool(groups)
        and 1 <= len(head) <= 3
        and head.isdigit()
        and head[0] != "0"
        and all(len(g) == 3 and g.isdigit() for g in groups)
    )


def _integer_part(integer: str, thousands: str | None, text: str) -> str:
    """The digits of an integer part, checking its thousands grouping; AmountError if wrong."""
    if integer == "":
        raise AmountError(f"{text!r} has no digits before the decimal separator")
    if any(c in _SPACES for c in integer):
        if thousands is not None and thousands in integer:
            raise AmountError(f"{text!r} mixes two thousands separators")
        if not _SPACE_GROUPED.fullmatch(integer):
            raise AmountError(f"{text!r} has thousands separators in the wrong places")
        return "".join(c for c in integer if c.isdigit())
    if thousands is not None and thousands in integer:
        if not _grouped(integer, thousands):
            raise AmountError(f"{text!r} has thousands separators in the wrong places")
        return integer.replace(thousands, "")
    if not integer.isdigit():
        raise AmountError(f"{text!r} is not a number like 1234.50")
    return integer


def _explain(text: str) -> str:
    """Why a text with characters other than digits and separators is not an amount."""
    low = text.strip().lower()
    if low.lstrip("+-") in {"nan", "inf", "infinity", "-inf", "+inf"}:
        return f"{text!r} is not a number"
    if low.startswith("-") or (low.startswith("(") and low.endswith(")")):
        return f"{text!r} is negative; the amount must be greater than zero"
    if low.startswith("+"):
        return f"{text!r} has a sign; write the amount without one"
    if re.fullmatch(r"[0-9.,]+e[+-]?[0-9]+", low):
        return f"{text!r} is in scientific notation; write the amount in full digits"
    if any(unicodedata.category(c) == "Sc" for c in text):
        return f"{text!r} has a currency sign; write only the number"
    if any(is_currency(word) for word in re.findall(r"[A-Za-z]{3}", text.upper())):
        return f"{text!r} has a currency code; write only the number"
    return f"{text!r} is not a number like 1234.50"


def parse_amount(text: str, decimal: str | None = None) -> Decimal:
    """An amount as a person writes it (`1234.5`, `1 234,50`, `1,234.50`) as a positive Decimal.

    Each value is read on its own, never by what the other values of the file look like: one
    separator followed by exactly three digits (`1,234`, `1.234`, `1,000`) could be a thousands
    group or three decimals, and raises AmbiguousAmount unless `decimal` ("." or ",") says which
    separator is the decimal one (`1,234` is 1234 with "." and 1.234 with ","). Every other
    problem raises AmountError with a plain message.
    """
    if decimal not in (None, *DECIMAL_SEPARATORS):
        raise ValueError(f"decimal separator must be '.' or ',', not {decimal!r}")
    s = text.strip(_SPACES + "\t")
    if s == "":
        raise AmountError("the amount is blank")
    if len(s) > 40:
        raise AmountError(f"{text[:40]!r}... is too long for an amount")
    if _PLAIN.fullmatch(s) and decimal != "," and not _grouped(s, "."):
        return _positive(Decimal(s), text)
    if not _ALLOWED.fullmatch(s):
        raise AmountError(_explain(text))
    dots, commas = s.count("."), s.count(",")
    if dots and commas:  # both: the last one is decimal, the other groups thousands
        dec = "." if s.rfind(".") > s.rfind(",") else ","
        other = "," if dec == "." else "."
        if s.count(dec) > 1:
            raise AmountError(f"{text!r} has more than one decimal separator")
        if decimal is not None and decimal != dec:
            raise AmountError(f"{text!r} does not use the decimal separator {decimal!r}")
        integer, fraction = s.split(dec)
        digits = _integer_part(integer, other, text)
        return _finish(digits, fraction, text)
    if not dots and not commas:
        return _finish(_integer_part(s, None, text), None, text)
    sep = "." if dots else ","
    other = "," if sep == "." else "."
    if s.count(sep) > 1:  # only thousands separators: 1,234,567
        if decimal == sep:
            raise AmountError(f"{text!r} has more than one decimal separator")
        return _finish(_integer_part(s, sep, text), None, text)
    integer, fraction = s.split(sep)
    spaced = any(c in _SPACES for c in integer)
    could_be_thousands = _grouped(s, sep)
    could_be_decimal = fraction.isdigit() and integer != ""
    if could_be_thousands and could_be_decimal and not spaced:
        if decimal is None:
            raise AmbiguousAmount(
                f"{text!r} could be read with {sep!r} as thousands or as decimal separator "
                f"({integer}{fraction} or {integer}.{fraction}); write it unambiguously "
                "or say which separator is decimal with --decimal . or --decimal ,"
            )
        if decimal == other:
            return _finish(_integer_part(s, sep, text), None, text)
        return _finish(_integer_part(integer, None, text), fraction, text)
    if decimal == other:  # the only reading is with `sep` as decimal, but the file says otherwise
        raise AmountError(f"{text!r} does not use the decimal separator {decimal!r}")
    return _finish(_integer_part(integer, None, text), fraction, text)


def _finish(digits: str, fraction: str | None, text: str) -> Decimal:
    """Digits and fraction as a positive Decimal, or AmountError."""
    if fraction is not None and not fraction.isdigit():
        raise AmountError(f"{text!r} has no digits after the decimal separator")
    if len(digits.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise AmountError(f"{text!r} is too large")
    return _positive(Decimal(digits if fraction is None else f"{digits}.{fraction}"), text)


def _positive(amount: Decimal, text: str) -> Decimal:
    if amount <= 0:
        raise AmountError(f"{text!r} is zero; the amount must be greater than zero")
    return amount


def decimals_of(amount: Decimal) -> int:
    """Decimal places an amount carries once trailing zeros are dropped (80.50 → 1)."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite by construction
    return max(0, -exponent)


def excel_number(value: float) -> str:
    """An Excel number cell as the text Excel shows: 15 significant digits, never `1e+20`.

    Excel stores 80.1 as the nearest double; '%.15g' gives back the digits a person typed.
    Integer-valued numbers (ids, whole amounts) have no `.0`.
    """
    return format(Decimal(f"{value:.15g}"), "f")
