"""embsurgeon: embedding-matrix conversion and surgery.

>>> from embsurgeon import read_table, write_table
>>> table = read_table("glove.6B.300d.txt")                         # doctest: +SKIP
>>> write_table(table, "glove.safetensors")                          # doctest: +SKIP
"""

from embsurgeon.errors import EmbsurgeonError
from embsurgeon.io.formats import ReadOptions, WriteOptions, read_table, write_table
from embsurgeon.table import EmbeddingTable
from embsurgeon.vocab import Vocabulary, load_vocabulary

__version__ = "0.1.0"

__all__ = [
    "EmbeddingTable",
    "EmbsurgeonError",
    "ReadOptions",
    "Vocabulary",
    "WriteOptions",
    "__version__",
    "load_vocabulary",
    "read_table",
    "write_table",
]
