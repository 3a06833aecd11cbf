"""The reproduction floor's shared machinery: run context, settings, sweep statistics, report.

Layering (``../shared/STYLE.md``): the library ``linsam`` (models, rules, data, engine, theory,
stats) is below this floor and imports nothing from it; ``paper_checks``, ``figures``,
``derivations`` and this package form the reproduction floor; the command line
(``linsam.cli``) is the only top floor, the one place that imports the reproduction floor.
Both ``paper_checks`` and ``figures`` take their :class:`Context`, settings and sweep
statistics from here.
"""

from reproduction.context import Context  # noqa: F401
