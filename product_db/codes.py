"""Product codes: GTIN (barcodes on packaged goods) and PLU (price look-up codes on produce).

Every part of LaneGuard compares codes: the scanner's code against the code the camera
recognised, the catalog's code against a model's class map. Those comparisons are only right if
the same product always has the same key, so a GTIN is stored normalised as GTIN-14 (a UPC-A
``036000291452`` and an EAN-13 ``0036000291452`` are the same product) while remembering the
form it came in, which is what a cashier or manager recognises on screen.

Invalid codes raise :class:`InvalidCodeError`, which names the code and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from product_db.errors import LaneGuardError

GTIN_FORMS: dict[int, str] = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}
PLU_ORGANIC_PREFIX = "9"


class InvalidCodeError(LaneGuardError, ValueError):
    """A product code that is not a valid GTIN or PLU. ``code`` is what was given."""

    def __init__(self, code: object, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"invalid product code {code!r}: {reason}")


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for ``body`` (all digits but the last).

    Weights alternate 3, 1, 3, ... starting from the digit next to the check digit, which makes
    the same function right for every GTIN length.
    """
    total = 0
    for position, char in enumerate(reversed(body)):
        total += int(char) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10


def _clean(raw: object) -> str:
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise InvalidCodeError(raw, f"expected a string of digits, got {type(raw).__name__}")
    text = str(raw).strip()
    if not text:
        raise InvalidCodeError(raw, "empty")
    if not text.isascii() or not text.isdigit():
        raise InvalidCodeError(raw, "must contain digits 0-9 only")
    return text


@dataclass(frozen=True, slots=True)
class GTIN:
    """A Global Trade Item Number: EAN-8, UPC-A, EAN-13 or GTIN-14, check digit verified.

    Equality and hashing use the GTIN-14 form, so the same product compares equal whatever form
    its barcode was printed in. ``display`` is the form it came in.
    """

    gtin14: str
    display: str
    kind: ClassVar[Literal["gtin"]] = "gtin"

    @classmethod
    def parse(cls, raw: object) -> GTIN:
        text = _clean(raw)
        if len(text) not in GTIN_FORMS:
            raise InvalidCodeError(
                raw, f"a GTIN has 8, 12, 13 or 14 digits, this one has {len(text)}"
            )
        expected = gtin_check_digit(text[:-1])
        if int(text[-1]) != expected:
            raise InvalidCodeError(
                raw,
                f"check digit is {text[-1]} but should be {expected} "
                f"(a mistyped or misread {GTIN_FORMS[len(text)]})",
            )
        return cls(gtin14=text.zfill(14), display=text)

    @property
    def form(self) -> str:
        """The barcode symbology family the code came in: EAN-8, UPC-A, EAN-13 or GTIN-14."""
        return GTIN_FORMS[len(self.display)]

    @property
    def key(self) -> str:
        """The normalised key used in every table and message."""
        return self.gtin14

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GTIN) and other.gtin14 == self.gtin14

    def __hash__(self) -> int:
        return hash(("gtin", self.gtin14))

    def __str__(self) -> str:
        return self.display


@dataclass(frozen=True, slots=True)
class PLU:
    """A produce price look-up code: 4 digits, or 5 digits where a leading 9 marks organic.

    The organic and conventional forms are different products (different prices), so the key
    keeps the prefix; ``base`` gives the 4-digit commodity code both share.
    """

    code: str
    kind: ClassVar[Literal["plu"]] = "plu"

    @classmethod
    def parse(cls, raw: object) -> PLU:
        text = _clean(raw)
        if len(text) == 4:
            return cls(code=text)
        if len(text) == 5:
            if not text.startswith(PLU_ORGANIC_PREFIX):
                raise InvalidCodeError(raw, "a 5-digit PLU must start with 9 (the organic prefix)")
            return cls(code=text)
        raise InvalidCodeError(raw, f"a PLU has 4 digits, or 5 for organic; got {len(text)}")

    @property
    def organic(self) -> bool:
        return len(self.code) == 5

    @property
    def base(self) -> str:
        """The 4-digit commodity code shared by the organic and conventional item."""
        return self.code[-4:]

    @property
    def key(self) -> str:
        return self.code

    @property
    def display(self) -> str:
        return self.code

    @property
    def form(self) -> str:
        return "PLU (organic)" if self.organic else "PLU"

    def __str__(self) -> str:
        return self.code


ProductCode = GTIN | PLU


def parse_code(raw: object) -> ProductCode:
    """Parse a scanned or typed code: 4-5 digits are a PLU, 8/12/13/14 digits a GTIN."""
    text = _clean(raw)
    if len(text) in (4, 5):
        return PLU.parse(text)
    if len(text) in GTIN_FORMS:
        return GTIN.parse(text)
    raise InvalidCodeError(
        raw,
        f"{len(text)} digits is neither a PLU (4, or 5 for organic) nor a GTIN (8, 12, 13 or 14)",
    )


def is_plu(code: str | None) -> bool:
    """Whether the catalog key ``code`` is a produce PLU (None: no code, not one)."""
    return code is not None and isinstance(parse_code(code), PLU)


def normalise_code(raw: object) -> str:
    """The catalog key for a code in any accepted form (GTIN-14 for GTINs, the PLU itself)."""
    return parse_code(raw).key


def display_code(key: str) -> str:
    """A short human form for a stored key: GTIN-14 keys lose the zero padding GS1 allows.

    Used where only the key is known; prefer the stored display form when there is one.
    """
    code = parse_code(key)
    if isinstance(code, PLU):
        return code.code
    stripped = code.gtin14.lstrip("0")
    for length in (8, 12, 13):
        if len(stripped) <= length:
            return code.gtin14[-length:]
    return code.gtin14
