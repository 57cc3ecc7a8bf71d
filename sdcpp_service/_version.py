from __future__ import annotations

__version__ = "0.1.0"
#: The bindings version this package is written against (its C structs are called directly).
PINNED_BINDINGS = "0.4.7"
