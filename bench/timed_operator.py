"""``AnalyzeBars`` with the time spent inside its own ``process_element`` measured in the job.

Splits a Flink-measured per-bar cost into the product's Python code (as it runs embedded in the
JVM, in thread mode) and everything Flink does around it. The outputs are produced inside the timed
section and only handed over after it, so their conversion to Java counts as Flink's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from flink_job.core.analyzer import AnalyticsSettings
from flink_job.operators import AnalyzeBars


class TimedAnalyzeBars(AnalyzeBars):
    def __init__(self, settings: AnalyticsSettings, report_path: str):
        super().__init__(settings)
        self.report_path = report_path

    def open(self, runtime_context: RuntimeContext):
        super().open(runtime_context)
        self.calls, self.outputs, self.spent_s = 0, 0, 0.0

    def process_element(self, value, ctx: KeyedProcessFunction.Context):
        started = time.perf_counter()
        out = list(super().process_element(value, ctx))
        self.spent_s += time.perf_counter() - started
        self.calls += 1
        self.outputs += len(out)
        yield from out

    def close(self):
        Path(self.report_path).write_text(json.dumps(
            {"calls": self.calls, "outputs": self.outputs, "spent_s": self.spent_s,
             "us_per_call": 1e6 * self.spent_s / max(1, self.calls)}))
