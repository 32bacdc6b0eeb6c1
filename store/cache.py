"""The response cache: outputs keyed by model, prompt, settings and seed."""

from __future__ import annotations

from collections.abc import Iterable

from .base import StoreBase
from .connection import utc_now
from .records import CachedResponse


class CacheStore(StoreBase):
    def cached_responses(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedResponse] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._iter(
                f"SELECT key, output, tokens_in, tokens_out FROM response_cache "
                f"WHERE key IN ({marks})",
                chunk,
            ):
                found[r["key"]] = CachedResponse(r["output"], r["tokens_in"], r["tokens_out"])
        return found

    def cache_responses(self, entries: dict[str, CachedResponse]) -> None:
        now = utc_now()
        with self._write() as db:
            for key, value in entries.items():
                db.execute(
                    "INSERT OR REPLACE INTO response_cache (key, output, tokens_in, tokens_out, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    [key, value.output, value.tokens_in, value.tokens_out, now],
                )

    def clear_cache(self) -> int:
        with self._write() as db:
            return int(db.execute("DELETE FROM response_cache").rowcount)
