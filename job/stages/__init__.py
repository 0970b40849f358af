"""The stages of one month, as functions with plain inputs and outputs.

Follow one month from the sources to the report in this order::

    data.ingest        sources -> DuckDB warehouse                        (job/sources, job/warehouse.py)
    data.prepare       warehouse -> point-in-time Dataset + validation    (job/validation)
    models.forecast    Dataset -> fitted or loaded models -> next month's forecasts   (job/models)
    models.allocate    forecasts -> next month's weights                  (job/strategy.py)
    evaluation.backtest        Dataset -> walk-forward forecasts, weights, returns, metrics (job/backtest.py)
    evaluation.lookahead_audit the same at publication lag 0, for the report
    report.assemble    everything above -> ReportData -> HTML             (job/report)
    session.Session    run lock, run id, log context and the Publisher   (job/store)

``job.pipeline.run_month`` composes them for ``rotation run``; each other subcommand
(``job/commands/*``) is a thin click adapter over the same functions. Stages never import the
commands or the pipeline.
"""
