"""Import sqlite-utils without pandas and numpy.

sqlite-utils imports pandas and numpy, when installed, only to accept their value types in
inserts. tunelab never passes them, and importing them costs about half a second on every
CLI start (`tunelab --help` must answer at once), so they are hidden during that one import.
"""

from __future__ import annotations

import sys


def import_sqlite_utils() -> None:
    if "sqlite_utils" in sys.modules:
        return
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail fast
    try:
        import sqlite_utils  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
