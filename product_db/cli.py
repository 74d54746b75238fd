"""`laneguard catalog ...`: the store's product catalog from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy.engine import Engine

from product_db.catalog import (
    ProductNotFoundError,
    export_records,
    get_product,
    import_records,
    list_products,
)
from product_db.catalog_io import (
    CatalogFileError,
    read_catalog_file,
    write_catalog_csv,
    write_catalog_json,
    write_rejects,
)
from product_db.codes import InvalidCodeError
from product_db.db import create_tables, database_url_from_env, make_engine
from product_db.money import format_price

DB_OPTION = click.option(
    "--db",
    "database_url",
    envvar="LANEGUARD_DATABASE_URL",
    default=None,
    metavar="URL",
    help="Database URL (default: $LANEGUARD_DATABASE_URL or sqlite:///data/laneguard.sqlite3). "
    "Example: postgresql://user@host/laneguard",
)


def _engine(database_url: str | None) -> Engine:
    engine = make_engine(database_url or database_url_from_env())
    create_tables(engine)
    return engine


@click.group()
def catalog() -> None:
    """Manage the product catalog: the list of products, codes and prices the lanes check
    scans against."""


@catalog.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@DB_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="File format (default: from the file name's extension).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import the good rows even if some are bad; bad rows go to a reject file.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write rejected rows (default: FILE.rejects.csv next to FILE).",
)
@click.option(
    "--currency",
    default="EUR",
    show_default=True,
    help="Currency for rows that have no currency column.",
)
def import_command(
    file: Path,
    database_url: str | None,
    fmt: str | None,
    skip_invalid: bool,
    rejects: Path | None,
    currency: str,
) -> None:
    """Import products from a CSV or JSON FILE (add new, update changed, record price changes).

    Columns: code, name, price (or price_minor), and optionally brand, currency, category,
    sold_by (unit/weight), age_restricted, active, packaging_version, packaging_note.
    By default nothing is imported if any row is bad. Importing the same file again changes
    nothing.
    """
    try:
        parsed = read_catalog_file(file, fmt, currency)
    except CatalogFileError as exc:
        raise click.ClickException(str(exc)) from None
    if parsed.rejected and not skip_invalid:
        click.echo(f"{file}: {len(parsed.rejected)} bad row(s); nothing was imported:", err=True)
        click.echo(parsed.describe_rejections(), err=True)
        click.echo("Fix them, or use --skip-invalid to import the good rows.", err=True)
        sys.exit(1)
    report = import_records(
        _engine(database_url), parsed.records, source=file.name, rejected=len(parsed.rejected)
    )
    click.echo(report.summary())
    if parsed.rejected:
        suffix = ".rejects.json" if parsed.location_word == "item" else ".rejects.csv"
        target = write_rejects(rejects or file.with_name(file.name + suffix), parsed)
        click.echo(f"{len(parsed.rejected)} rejected row(s) written to {target}:")
        click.echo(parsed.describe_rejections(limit=5))


@catalog.command("export")
@DB_OPTION
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file (default: standard output).",
)
def export_command(database_url: str | None, fmt: str, out: Path | None) -> None:
    """Export every product (inactive ones too) in a format `catalog import` reads back."""
    records = export_records(_engine(database_url))
    writer = write_catalog_csv if fmt == "csv" else write_catalog_json
    if out is None:
        writer(records, sys.stdout)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        count = writer(records, handle)
    click.echo(f"{count} products written to {out}", err=True)


@catalog.command("list")
@DB_OPTION
@click.option("--search", default=None, help="Match name, brand or code.")
@click.option("--category", default=None, help="Only this category.")
@click.option("--inactive", is_flag=True, help="Include deactivated products.")
@click.option("--limit", type=click.IntRange(min=1), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(
    database_url: str | None,
    search: str | None,
    category: str | None,
    inactive: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """List products, sorted by name."""
    records = list_products(
        _engine(database_url),
        search=search,
        category=category,
        include_inactive=inactive,
        limit=limit,
    )
    if as_json:
        for record in records:
            click.echo(json.dumps(record.as_dict(), ensure_ascii=False))
        return
    for record in records:
        flags = "" if record.active else "  (inactive)"
        click.echo(
            f"{record.display_code:>14}  {record.name[:40]:<40}  {record.brand[:16]:<16}  "
            f"{format_price(record.price_minor, record.currency):>9} {record.currency}"
            f"{' /kg' if record.sold_by.value == 'weight' else ''}{flags}"
        )
    click.echo(f"{len(records)} product(s)", err=True)


@catalog.command("show")
@click.argument("code")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(code: str, database_url: str | None, as_json: bool) -> None:
    """Show one product by CODE (GTIN in any form, or PLU): prices, packaging, model class id."""
    try:
        detail = get_product(_engine(database_url), code)
    except (InvalidCodeError, ProductNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    record = detail.record
    if as_json:
        payload = {
            **record.as_dict(),
            "class_id": detail.class_id,
            "packaging_versions": [
                {"version": v.version, "first_seen": v.first_seen.isoformat(), "note": v.note}
                for v in detail.packaging_versions
            ],
            "price_history": [
                {
                    "price_minor": p.price_minor,
                    "currency": p.currency,
                    "changed_at": p.changed_at.isoformat(),
                    "source": p.source,
                }
                for p in detail.price_history
            ],
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"{record.name}  ({record.brand})" if record.brand else record.name)
    click.echo(f"  code        {record.display_code}  (key {record.code}, {record.code_kind})")
    click.echo(
        f"  price       {format_price(record.price_minor, record.currency)} "
        f"{record.currency} per {'kg' if record.sold_by.value == 'weight' else 'item'}"
    )
    click.echo(f"  category    {record.category or '-'}")
    click.echo(f"  age check   {'yes' if record.age_restricted else 'no'}")
    click.echo(f"  active      {'yes' if record.active else 'no'}")
    click.echo(f"  model class {detail.class_id}")
    click.echo("  packaging versions:")
    for version in detail.packaging_versions:
        note = f"  {version.note}" if version.note else ""
        click.echo(f"    v{version.version}  first seen {version.first_seen:%Y-%m-%d}{note}")
    click.echo("  price history:")
    for change in detail.price_history:
        click.echo(
            f"    {change.changed_at:%Y-%m-%d %H:%M}  "
            f"{format_price(change.price_minor, change.currency)} {change.currency}  "
            f"({change.source})"
        )
