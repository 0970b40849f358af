"""Progress for long work: a tqdm bar on a terminal, structured log lines otherwise.

Training epochs, walk-forward folds and downloads all report through :func:`progress` (for iterables)
or :class:`Progress` (for callbacks, e.g. Keras epochs), so a CronJob's JSON log shows the same steps a
person sees as a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from job.logs import get_logger, log_format

T = TypeVar("T")
log = get_logger("progress")


def _interactive() -> bool:
    return log_format() == "text" and sys.stderr.isatty()


class Progress:
    """Report ``update()`` steps of ``total`` under ``desc``; bar on a TTY, log lines otherwise.

    Off a terminal it logs at most every ``min_interval_s`` seconds, plus the first and last step.
    """

    def __init__(self, desc: str, total: int | None, *, min_interval_s: float = 2.0, **fields: Any):
        self.desc, self.total, self.fields = desc, total, fields
        self.n = 0
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._start = time.monotonic()
        self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False) if _interactive() else None

    def update(self, n: int = 1, **fields: Any) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v)
                                       for k, v in fields.items()})
            return
        now = time.monotonic()
        if self.n in (1, self.total) or now - self._last >= self.min_interval_s:
            self._last = now
            log.info("%s %s/%s", self.desc, self.n, self.total if self.total is not None else "?",
                     extra={"fields": {"step": self.n, "total": self.total,
                                       "elapsed_s": round(now - self._start, 2), **self.fields, **fields}})

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(items: Iterable[T], desc: str, total: int | None = None, **fields: Any) -> Iterator[T]:
    """Iterate ``items`` while reporting progress (see :class:`Progress`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, **fields) as bar:
        for item in items:
            yield item
            bar.update()
