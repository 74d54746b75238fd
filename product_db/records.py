"""One catalog row, validated: the unit that import, export and the API exchange.

Parsing is a plain function rather than a pydantic model per row because a store catalog has
hundreds of thousands of rows and import must stay fast; every rejection still names the field
and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from product_db.codes import PLU, InvalidCodeError, parse_code
from product_db.errors import LaneGuardError
from product_db.models import SoldBy
from product_db.money import InvalidPriceError, format_price, normalise_currency, parse_price_minor

REQUIRED_COLUMNS = ("code", "name")
PRICE_COLUMNS = ("price", "price_minor")
OPTIONAL_COLUMNS = (
    "brand",
    "currency",
    "category",
    "sold_by",
    "age_restricted",
    "active",
    "packaging_version",
    "packaging_note",
)
ALL_COLUMNS = (*REQUIRED_COLUMNS, *PRICE_COLUMNS, *OPTIONAL_COLUMNS)
EXPORT_COLUMNS = (
    "code",
    "name",
    "brand",
    "price",
    "currency",
    "category",
    "sold_by",
    "age_restricted",
    "active",
    "packaging_version",
)

MAX_NAME = 200
MAX_BRAND = 120
MAX_CATEGORY = 80
MAX_NOTE = 200
MAX_PRICE_MINOR = 10**10  # 100 million in major units: a typo, not a product

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


class InvalidRowError(LaneGuardError, ValueError):
    """A catalog row that cannot be imported; the message names the field and the reason."""


@dataclass(frozen=True, slots=True)
class ProductRecord:
    code: str
    display_code: str
    code_kind: str
    name: str
    brand: str
    price_minor: int
    currency: str
    category: str
    sold_by: SoldBy
    age_restricted: bool
    active: bool
    packaging_version: int | None = None
    packaging_note: str = ""

    def as_export_row(self) -> dict[str, str]:
        """The row as it is written to CSV: display code, major-unit price."""
        return {
            "code": self.display_code,
            "name": self.name,
            "brand": self.brand,
            "price": format_price(self.price_minor, self.currency),
            "currency": self.currency,
            "category": self.category,
            "sold_by": self.sold_by.value,
            "age_restricted": "true" if self.age_restricted else "false",
            "active": "true" if self.active else "false",
            "packaging_version": ""
            if self.packaging_version is None
            else str(self.packaging_version),
        }

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["sold_by"] = self.sold_by.value
        return data


def check_columns(columns: list[str]) -> None:
    """Raise InvalidRowError naming missing or unknown columns (a typo must not go unnoticed)."""
    present = set(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if not present & set(PRICE_COLUMNS):
        missing.append("price (or price_minor)")
    unknown = sorted(present - set(ALL_COLUMNS))
    problems = []
    if missing:
        problems.append("missing column(s): " + ", ".join(missing))
    if unknown:
        problems.append(
            "unknown column(s): "
            + ", ".join(repr(c) for c in unknown)
            + "; allowed: "
            + ", ".join(ALL_COLUMNS)
        )
    if problems:
        raise InvalidRowError("; ".join(problems))


def _text(row: Mapping[str, object], field: str, max_len: int, required: bool = False) -> str:
    raw = row.get(field)
    value = "" if raw is None else str(raw).strip()
    if required and not value:
        raise InvalidRowError(f"{field} is empty")
    if len(value) > max_len:
        raise InvalidRowError(f"{field} is {len(value)} characters long, at most {max_len}")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidRowError(f"{field} contains control characters")
    return value


def _bool(row: Mapping[str, object], field: str, default: bool) -> bool:
    raw = row.get(field)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidRowError(f"{field} {raw!r} is not true/false")


def _price(row: Mapping[str, object], currency: str) -> int:
    price = row.get("price")
    price_minor = row.get("price_minor")
    has_price = price is not None and str(price).strip() != ""
    has_minor = price_minor is not None and str(price_minor).strip() != ""
    if has_price and has_minor:
        raise InvalidRowError("give price or price_minor, not both")
    try:
        if has_minor:
            if isinstance(price_minor, bool):
                raise InvalidPriceError(f"price_minor {price_minor!r} is not a whole number")
            text = str(price_minor).strip()
            if not text.isdigit():
                raise InvalidPriceError(
                    f"price_minor {price_minor!r} is not a whole non-negative number"
                )
            minor = int(text)
        elif has_price:
            minor = parse_price_minor(str(price), currency)
        else:
            raise InvalidPriceError("price is empty")
    except InvalidPriceError as exc:
        raise InvalidRowError(str(exc)) from None
    if minor > MAX_PRICE_MINOR:
        raise InvalidRowError(f"price {minor} (minor units) is implausibly large")
    return minor


def parse_row(row: Mapping[str, object], default_currency: str = "EUR") -> ProductRecord:
    """Validate one catalog row (CSV strings or JSON values) into a ProductRecord."""
    try:
        code = parse_code(row.get("code") if row.get("code") is not None else "")
    except InvalidCodeError as exc:
        raise InvalidRowError(f"code: {exc.reason} ({exc.code!r})") from None
    raw_currency = row.get("currency")
    try:
        currency = normalise_currency(str(raw_currency) if raw_currency else default_currency)
    except InvalidPriceError as exc:
        raise InvalidRowError(str(exc)) from None
    sold_by_raw = str(row.get("sold_by") or "").strip().lower()
    if sold_by_raw:
        try:
            sold_by = SoldBy(sold_by_raw)
        except ValueError:
            raise InvalidRowError(f"sold_by {sold_by_raw!r} must be 'unit' or 'weight'") from None
    else:
        sold_by = SoldBy.weight if isinstance(code, PLU) else SoldBy.unit
    version_raw = row.get("packaging_version")
    version: int | None = None
    if version_raw is not None and str(version_raw).strip() != "":
        text = str(version_raw).strip()
        if not text.isdigit() or int(text) < 1:
            raise InvalidRowError(f"packaging_version {version_raw!r} must be a number from 1")
        version = int(text)
    return ProductRecord(
        code=code.key,
        display_code=code.display,
        code_kind=code.kind,
        name=_text(row, "name", MAX_NAME, required=True),
        brand=_text(row, "brand", MAX_BRAND),
        price_minor=_price(row, currency),
        currency=currency,
        category=_text(row, "category", MAX_CATEGORY),
        sold_by=sold_by,
        age_restricted=_bool(row, "age_restricted", False),
        active=_bool(row, "active", True),
        packaging_version=version,
        packaging_note=_text(row, "packaging_note", MAX_NOTE),
    )
