"""The job's pure core: bars, indicators, signals, rollups and per-symbol state, with no PyFlink, no
AWS and no I/O, so it runs and is tested as plain Python. The Flink shell around it (``flink_job``'s
other modules) turns rows into bars and results into rows; the contracts in ``pyproject.toml``
(``lint-imports``) keep it that way."""
