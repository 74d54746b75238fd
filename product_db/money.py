"""Prices in minor units (cents, öre, yen) with an ISO 4217 currency.

Prices are integers in the currency's minor unit so that sums, severity weights and
"loss prevented" totals are exact. People type prices in major units ("2.49"), so parsing
converts using the currency's number of decimals and refuses anything that would round.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from product_db.errors import LaneGuardError

# ISO 4217 active codes. Most have 2 decimals; the exceptions are listed explicitly.
_ZERO_DECIMALS = frozenset(
    ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF").split()
)
_THREE_DECIMALS = frozenset(("BHD IQD JOD KWD LYD OMR TND").split())
_TWO_DECIMALS = frozenset(
    (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
        "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
        "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
        "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
        "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
        "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWL"
    ).split()
)


class InvalidPriceError(LaneGuardError, ValueError):
    """A price or currency that cannot be stored exactly. The message names the value."""


def currency_decimals(currency: str) -> int:
    """Number of minor-unit decimals for an ISO 4217 code; raises for unknown codes."""
    if currency in _TWO_DECIMALS:
        return 2
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    raise InvalidPriceError(f"unknown currency {currency!r}: use an ISO 4217 code such as EUR")


def normalise_currency(raw: str) -> str:
    code = raw.strip().upper()
    currency_decimals(code)
    return code


def parse_price_minor(raw: str, currency: str) -> int:
    """Convert a major-unit price string ("2.49", "2,49", "1200") to minor units.

    Raises :class:`InvalidPriceError` for empty, negative, non-numeric prices and for prices
    with more decimals than the currency has (they would be silently rounded otherwise).
    """
    text = raw.strip().replace(",", ".")
    if not text:
        raise InvalidPriceError("price is empty")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidPriceError(f"price {raw!r} is not a number") from None
    if not value.is_finite():
        raise InvalidPriceError(f"price {raw!r} is not a number")
    if value < 0:
        raise InvalidPriceError(f"price {raw!r} is negative")
    decimals = currency_decimals(currency)
    minor = value.scaleb(decimals)
    if minor != minor.to_integral_value():
        raise InvalidPriceError(
            f"price {raw!r} has more than {decimals} decimals, which {currency} does not have"
        )
    return int(minor)


def format_price(minor: int, currency: str) -> str:
    """The major-unit string for a minor-unit amount: ``format_price(249, "EUR") == "2.49"``."""
    decimals = currency_decimals(currency)
    if decimals == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"
