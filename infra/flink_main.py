"""Managed Flink's entry point: ``main.py`` at the root of ``dist/flink-app.zip``.

The application's ``kinesis.analytics.flink.run.options`` group names this file; Flink runs it as a
script, so importing it (as the packaging test does) starts nothing.
"""

from flink_job.main import main

if __name__ == "__main__":
    main()
