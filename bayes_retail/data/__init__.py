"""Data layer: sources, validation, cleaning rules and derived panels (docs/data.md)."""

from bayes_retail.data.clean import clean_lines
from bayes_retail.data.dataset import RetailData, default_cache_dir, load_data, load_side, write_panels
from bayes_retail.data.sources import Source, locate, read_table

__all__ = [
    "RetailData",
    "Source",
    "clean_lines",
    "default_cache_dir",
    "load_data",
    "load_side",
    "locate",
    "read_table",
    "write_panels",
]
