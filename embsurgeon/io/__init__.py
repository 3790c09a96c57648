"""Readers and writers, one module per format family; ``formats`` holds the registry."""

from embsurgeon.io.formats import (
    FORMATS,
    Format,
    FormatName,
    ReadOptions,
    WriteOptions,
    detect_format,
    read_table,
    write_table,
)

__all__ = [
    "FORMATS",
    "Format",
    "FormatName",
    "ReadOptions",
    "WriteOptions",
    "detect_format",
    "read_table",
    "write_table",
]
