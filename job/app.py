"""What every subcommand receives from the ``rotation`` group: settings and where things live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from job.config import Settings

if TYPE_CHECKING:
    from job.store.base import Store


@dataclass
class App:
    """The group's context object (``ctx.obj``): effective settings plus the verbosity and log format."""

    settings: Settings
    verbose: bool = False
    log_format: str = "text"

    @property
    def warehouse(self) -> Path:
        return Path(self.settings.paths.warehouse)

    @property
    def store_uri(self) -> str:
        return self.settings.paths.store

    def store(self) -> Store:
        from job.store import open_store

        return open_store(self.store_uri, self.settings)

    def override(self, section: str, **values: Any) -> None:
        """Apply command flags that were given (None means 'not given') on top of the settings."""
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            self.settings = self.settings.with_overrides({section: given})


pass_app = click.make_pass_decorator(App)
