"""``rotation config show``: the effective configuration, secrets masked."""

from __future__ import annotations

import json

import click

from job.app import App, pass_app
from job.config import masked_environment, settings_as_dict


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="json", show_default=True)
@pass_app
def show(app: App, fmt: str) -> None:
    """Print the effective configuration (defaults < --config < ROTATION_* < flags), secrets masked."""
    data = settings_as_dict(app.settings)
    data["secrets"] = masked_environment()
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    import tomli_w  # only this output format needs it

    click.echo(tomli_w.dumps(data))
