"""Managed Flink's entry point: ``main.py`` at the root of ``dist/flink-app.zip``.

The application's ``kinesis.analytics.flink.run.options`` group names this file; Flink runs it as a
script, so importing it (as the packaging test does) starts nothing. The job's package sits in
``python/``, the folder the run options' ``pyFiles`` ship to the TaskManagers; Flink puts it on this
client's path as well, and the line below makes ``python main.py`` in the unpacked zip behave alike.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "python"))

from flink_job.main import main

if __name__ == "__main__":
    main()
