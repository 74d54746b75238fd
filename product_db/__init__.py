"""product_db: product codes (GTIN, PLU), prices and the catalog every other part checks against."""

from pathlib import Path

SAMPLE_DATA = Path(__file__).parent / "sample_data"
SAMPLE_CATALOG = SAMPLE_DATA / "sample_catalog.csv"
PRODUCE_CLASSES = SAMPLE_DATA / "produce_classes.csv"
