# Type stub for the optional C extension embsurgeon/_fastparse.c (see its docstrings).
from typing import TypeAlias

from numpy import ndarray

_Buffer: TypeAlias = bytes | bytearray | memoryview | ndarray

def parse_text(data: _Buffer, start: int, dim: int, out: _Buffer, /
               ) -> tuple[bytes, int, int, int]: ...
def scan_records(data: _Buffer, start: int, end: int, dim: int, max_records: int,
                 max_token: int, out: _Buffer, /) -> tuple[bytes, int, int, int, int]: ...
