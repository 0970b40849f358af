"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no scripts, no URLs.

:mod:`job.report.view` computes everything the page shows (numbers formatted, colours decided, rows
ordered); the jinja2 templates in ``job/report/templates`` lay it out: ``report.html`` is the page,
``sections/<anchor>.html`` one section each, ``macros.html`` the table markup, ``report.css`` the style.
The environment escapes every value (autoescape) and fails on any name a template uses that the view
lacks (:class:`jinja2.StrictUndefined`). A Content-Security-Policy meta tag forbids the browser any
fetch, so a report opened from a mail or an object store stays offline. Output is deterministic: the
same :class:`ReportData` gives byte-identical HTML.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from job.report.data import ReportData
from job.report.view import PageView, build_view

ENVIRONMENT = Environment(
    loader=PackageLoader("job.report", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)


def render_view(view: PageView) -> str:
    """The page for an already built view.

    ``://`` is written ``:&#47;&#47;`` (the same text once the browser decodes it) so that no URL appears
    literally in the file, even when a configuration value or a source note holds one. The page has no
    script and its stylesheet no ``://``, so the only places it can occur are escaped text and
    attribute values, where the entity reads back as ``/``.
    """
    return ENVIRONMENT.get_template("report.html").render(page=view).replace("://", ":&#47;&#47;")


def render_html(data: ReportData) -> str:
    """The complete report page for ``data``: self-contained, deterministic, every value escaped."""
    return render_view(build_view(data))
