"""Per-epoch training history, written as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from .._atomic import atomic_write


class History:
    """One row per epoch: epoch, loss, train_acc, test_acc, val_acc, lr, seconds, ..."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def column(self, key: str) -> list[Any]:
        return [row.get(key) for row in self.rows]

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    def __len__(self) -> int:
        return len(self.rows)

    def save_json(self, path: str | os.PathLike[str]) -> None:
        with atomic_write(path) as handle:
            handle.write(json.dumps(self.rows, indent=1).encode())

    def save_csv(self, path: str | os.PathLike[str]) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_write(path) as handle:
            handle.write(text.getvalue().encode())
