"""The deploy-time storage check (``infra/sizing.py``): symbols x retention against the volume."""

from __future__ import annotations

import pytest

from flink_job.core.index_lifecycle import parse_retention
from infra import sizing

DEFAULTS = parse_retention("")


def test_usable_storage_leaves_the_service_reserve_and_the_watermark():
    # 10 GiB: 2 GiB reserved, 85% of the other 8.
    assert sizing.usable_gib(10, 1) == pytest.approx(6.8)
    # The reserve is at most 20 GiB a node.
    assert sizing.usable_gib(200, 2) == pytest.approx(2 * 180 * 0.85)


def test_needed_storage_grows_with_symbols_retention_and_replicas():
    one = sizing.needed_gib(1, DEFAULTS)
    assert sizing.needed_gib(100, DEFAULTS) == pytest.approx(100 * one)
    assert sizing.needed_gib(100, DEFAULTS, replicas=1) == pytest.approx(200 * one)
    assert sizing.needed_gib(100, parse_retention("stock-indicators=30")) < sizing.needed_gib(100, DEFAULTS)
    # Kept: retention plus the longest period, in trading days.
    assert sizing.kept_trading_days("stock-indicators", 90) == pytest.approx(121 * 252 / 365)


def test_the_template_default_fits_its_four_symbols_and_a_thousand_do_not():
    assert sizing.warning(["IBM", "AAPL", "MSFT", "SPY"], 10, 1, DEFAULTS) is None
    message = sizing.warning([f"S{i}" for i in range(1000)], 10, 1, DEFAULTS)
    assert message and "1000 symbols kept 90 days" in message and "blocks every write" in message
    volume = sizing.smallest_volume_gib(1000, 1, DEFAULTS)
    assert f"OPENSEARCH_VOLUME_SIZE={volume}" in message
    assert sizing.check(1000, volume, 1, DEFAULTS).fits and not sizing.check(1000, volume - 1, 1, DEFAULTS).fits


def test_two_nodes_hold_a_replica_of_everything():
    assert sizing.check(100, 50, 2, DEFAULTS).needed_gib == pytest.approx(sizing.needed_gib(100, DEFAULTS, replicas=1))


def test_command_line_reads_unset_settings_from_the_template(capsys):
    assert sizing.template_default("OpenSearchVolumeSize") == "10"
    assert sizing.template_default("Symbols") == "IBM,AAPL,MSFT,SPY"
    assert sizing.main(["--symbols", "", "--volume-gib", "", "--nodes", "", "--retention", ""]) == 0
    assert "4 symbols fit in 1 x 10 GiB" in capsys.readouterr().out
    assert sizing.main(["--symbols", ",".join(f"S{i}" for i in range(1000))]) == 0
    assert "warning: 1000 symbols" in capsys.readouterr().err
    assert sizing.main(["--retention", "stock-dlq=0"]) == 2
