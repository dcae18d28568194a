"""The clinical alerting engine: typed model, data-quality gating, programme templates and a
pure evaluator (no I/O). See docs/alerting.md."""
