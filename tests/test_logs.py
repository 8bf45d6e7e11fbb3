"""The job's JSON log lines outside the JVM: one parseable line per event on stderr."""

from __future__ import annotations

import json
import logging

from flink_job.logs import log_event, use_flink_log


def test_an_event_is_one_json_line_on_stderr(capsys):
    assert use_flink_log() is False  # not embedded in Flink's JVM: Python logging
    line = log_event("state_reset", logging.WARNING, symbol="IBM", reason="periods_changed", detail={"a": 1})
    err = capsys.readouterr().err
    assert err == line + "\n"
    assert json.loads(err) == {"event": "state_reset", "level": "WARNING", "logger": "flink_job", "symbol": "IBM",
                               "reason": "periods_changed", "detail": {"a": 1}}
