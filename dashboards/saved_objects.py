"""The OpenSearch Dashboards saved objects of the "Real-time stock analytics" dashboard.

    .venv/bin/python -m dashboards.saved_objects     # rewrites dashboards/opensearch/stock-analytics.ndjson

The ndjson file is generated from here so the escaped JSON-in-JSON of saved objects is never edited
by hand; a test checks the committed file is up to date. Index patterns list their fields from the
job's index templates (an empty field list would make Dashboards show nothing until someone
refreshes the pattern). Objects use the reference-based format of OpenSearch Dashboards 2.x with
its migration versions, so an import stores them as they are.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "flink_job" / "index_templates"
NDJSON = Path(__file__).resolve().parent / "opensearch" / "stock-analytics.ndjson"

DASHBOARD_ID = "stock-analytics-dashboard"
DASHBOARD_TITLE = "Real-time stock analytics"
MIGRATION_VERSIONS = {"index-pattern": "7.6.0", "visualization": "7.10.0", "search": "7.9.3", "dashboard": "7.9.3"}
PANEL_VERSION = "7.10.0"  # panels at or above 7.3 are not migrated again when a dashboard loads
EMPTY_QUERY = {"query": "", "language": "kuery"}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
# OpenSearch field type -> Dashboards field type
FIELD_TYPES = {"keyword": "string", "text": "string", "double": "number", "long": "number", "short": "number",
               "boolean": "boolean", "date": "date"}


@dataclass(frozen=True)
class IndexPattern:
    id: str
    index: str
    time_field: str
    formats: dict


INDICATORS = IndexPattern("stock-analytics-indicators", "stock-indicators", "ts",
                          {"return_1": {"id": "percent"}, "volume": {"id": "number", "params": {"pattern": "0,0"}}})
SIGNALS = IndexPattern("stock-analytics-signals", "stock-signals", "ts", {})
BARS_5M = IndexPattern("stock-analytics-bars-5m", "stock-bars-5m", "window_start",
                       {"volume": {"id": "number", "params": {"pattern": "0,0"}}})
INDEX_PATTERNS = (INDICATORS, SIGNALS, BARS_5M)


def mapping_fields(index: str) -> dict[str, dict]:
    """Leaf fields of an index template's mapping, dotted paths -> their mapping."""
    template = json.loads((TEMPLATES_DIR / f"{index}.json").read_text())

    def walk(properties: dict, prefix: str) -> dict[str, dict]:
        out = {}
        for name, spec in properties.items():
            if "properties" in spec:
                out.update(walk(spec["properties"], f"{prefix}{name}."))
            else:
                out[prefix + name] = spec
        return out

    return walk(template["template"]["mappings"]["properties"], "")


def field_specs(index: str) -> list[dict]:
    """The ``fields`` of an index pattern, as Dashboards itself would list them."""
    specs = [
        {"name": "_id", "type": "string", "esTypes": ["_id"], "searchable": True, "aggregatable": True, "readFromDocValues": False},
        {"name": "_index", "type": "string", "esTypes": ["_index"], "searchable": True, "aggregatable": True, "readFromDocValues": False},
        {"name": "_score", "type": "number", "searchable": False, "aggregatable": False, "readFromDocValues": False},
        {"name": "_source", "type": "_source", "esTypes": ["_source"], "searchable": False, "aggregatable": False, "readFromDocValues": False},
    ]
    for name, spec in sorted(mapping_fields(index).items()):
        kind = spec["type"]
        indexed = spec.get("index", True)
        doc_values = kind != "text" and spec.get("doc_values", True)
        specs.append({"name": name, "type": FIELD_TYPES[kind], "esTypes": [kind], "searchable": indexed,
                      "aggregatable": doc_values, "readFromDocValues": doc_values})
    return [dict(spec, count=0, scripted=False) for spec in specs]


def saved_object(kind: str, id_: str, attributes: dict, references: list[dict]) -> dict:
    return {"id": id_, "type": kind, "attributes": attributes, "references": references,
            "migrationVersion": {kind: MIGRATION_VERSIONS[kind]}}


def index_pattern(pattern: IndexPattern) -> dict:
    return saved_object("index-pattern", pattern.id, {
        "title": pattern.index, "timeFieldName": pattern.time_field,
        "fields": json.dumps(field_specs(pattern.index)), "fieldFormatMap": json.dumps(pattern.formats),
    }, [])


def search_source(pattern: IndexPattern | None) -> tuple[dict, list[dict]]:
    """kibanaSavedObjectMeta and references of an object that searches ``pattern`` (or none)."""
    source: dict = {"query": EMPTY_QUERY, "filter": []}
    references = []
    if pattern:
        source["indexRefName"] = INDEX_REF
        references.append({"name": INDEX_REF, "type": "index-pattern", "id": pattern.id})
    return {"searchSourceJSON": json.dumps(source)}, references


def visualization(id_: str, title: str, vis_type: str, params: dict, aggs: list[dict],
                  pattern: IndexPattern | None, references: list[dict] = ()) -> dict:
    meta, refs = search_source(pattern)
    if vis_type == "metrics":  # TSVB names its index in params and keeps no search source
        meta = {"searchSourceJSON": "{}"}
    return saved_object("visualization", id_, {
        "title": title, "description": "", "version": 1, "uiStateJSON": "{}",
        "visState": json.dumps({"title": title, "type": vis_type, "params": params, "aggs": aggs}),
        "kibanaSavedObjectMeta": meta,
    }, refs + list(references))


# --- aggregations --------------------------------------------------------------------------------
def metric(agg_id: str, agg: str, field: str, label: str) -> dict:
    return {"id": agg_id, "enabled": True, "type": agg, "schema": "metric",
            "params": {"field": field, "customLabel": label}}


def latest(agg_id: str, field: str, sort_field: str, label: str) -> dict:
    """The value of ``field`` in the newest document (a top-hit metric)."""
    return {"id": agg_id, "enabled": True, "type": "top_hits", "schema": "metric",
            "params": {"field": field, "aggregate": "concat", "size": 1, "sortField": sort_field,
                       "sortOrder": "desc", "customLabel": label}}


def over_time(agg_id: str, field: str) -> dict:
    return {"id": agg_id, "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": field, "useNormalizedOpenSearchInterval": True, "scaleMetricValues": False,
                       "interval": "auto", "drop_partials": False, "min_doc_count": 1, "extended_bounds": {}}}


def terms(agg_id: str, field: str, schema: str, size: int, label: str) -> dict:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": False,
                       "otherBucketLabel": "Other", "missingBucket": False, "missingBucketLabel": "Missing",
                       "customLabel": label}}


# --- visualization types -------------------------------------------------------------------------
def xy_params(chart: str, series: list[tuple[str, str, str]], axis_title: str, category_title: str = "") -> dict:
    """Line/area/histogram parameters; series are (metric agg id, label, "line" or "histogram")."""
    return {
        "type": chart, "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [],
        "addTimeMarker": False, "labels": {}, "grid": {"categoryLines": False},
        "thresholdLine": {"show": False, "value": 0, "width": 1, "style": "full", "color": "#E7664C"},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "style": {}, "scale": {"type": "linear"}, "title": {"text": category_title},
                          "labels": {"show": True, "filter": True, "truncate": 100}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                       "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": axis_title}}],
        "seriesParams": [{"show": True, "type": kind, "mode": "normal", "data": {"id": agg_id, "label": label},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "interpolate": "linear", "showCircles": False}
                         for agg_id, label, kind in series],
    }


def time_chart(id_: str, title: str, pattern: IndexPattern, chart: str, axis_title: str,
               series: list[tuple[str, str, str, str]]) -> dict:
    """A chart over time of (aggregation, field, label, "line"/"histogram") series."""
    aggs = [metric(str(i), agg, field, label) for i, (agg, field, label, _) in enumerate(series, start=1)]
    aggs.append(over_time(str(len(series) + 1), pattern.time_field))
    params = xy_params(chart, [(str(i), label, kind) for i, (_, _, label, kind) in enumerate(series, start=1)],
                       axis_title)
    return visualization(id_, title, chart, params, aggs, pattern)


def tsvb_line(series_id: str, label: str, color: str, metric_spec: dict, width: int) -> dict:
    return {"id": series_id, "label": label, "color": color, "split_mode": "everything",
            "metrics": [dict(metric_spec, id=f"{series_id}-metric")], "separate_axis": 0,
            "axis_position": "right", "formatter": "number", "chart_type": "line", "line_width": width,
            "point_size": 0, "fill": 0, "stacked": "none"}


def rsi_with_bands() -> dict:
    """TSVB: the only built-in chart that draws fixed 30 / 70 lines next to a series."""
    params = {
        "id": "stock-analytics-rsi-panel", "type": "timeseries", "index_pattern": INDICATORS.index,
        "time_field": INDICATORS.time_field, "default_index_pattern": INDICATORS.index,
        "default_timefield": INDICATORS.time_field, "interval": "auto", "axis_position": "left",
        "axis_formatter": "number", "axis_scale": "normal", "axis_min": "0", "axis_max": "100",
        "show_legend": 1, "show_grid": 1, "tooltip_mode": "show_all", "isModelInvalid": False,
        "annotations": [], "filter": EMPTY_QUERY,
        "series": [
            tsvb_line("rsi", "RSI 14", "#6092C0", {"type": "avg", "field": "rsi_14"}, 2),
            tsvb_line("overbought", "70", "#E7664C", {"type": "static", "value": "70"}, 1),
            tsvb_line("oversold", "30", "#54B399", {"type": "static", "value": "30"}, 1),
        ],
    }
    return visualization("stock-analytics-vis-rsi", "RSI 14 with 30 / 70", "metrics", params, [], None)


def symbol_control() -> dict:
    control = {"id": "symbol", "fieldName": "symbol", "parent": "", "label": "Symbol", "type": "list",
               "indexPatternRefName": "control_0_index_pattern",
               "options": {"type": "terms", "multiselect": True, "dynamicOptions": True, "size": 100, "order": "desc"}}
    params = {"controls": [control], "updateFiltersOnChange": True, "useTimeFilter": False, "pinFilters": False}
    return visualization("stock-analytics-vis-symbol", "Symbol", "input_control_vis", params, [], None,
                         [{"name": "control_0_index_pattern", "type": "index-pattern", "id": INDICATORS.id}])


def latest_price() -> dict:
    params = {"type": "metric", "addTooltip": True, "addLegend": False,
              "metric": {"percentageMode": False, "useRanges": False, "colorSchema": "Green to Red",
                         "metricColorMode": "None", "colorsRange": [{"from": 0, "to": 10000}],
                         "labels": {"show": True}, "invertColors": False,
                         "style": {"bgFill": "#000", "bgColor": False, "labelColor": False, "subText": "",
                                   "fontSize": 28}}}
    aggs = [latest("1", "close", "ts", "Last close"), latest("2", "return_1", "ts", "Change (1 bar)"),
            latest("3", "vwap", "ts", "VWAP"), terms("4", "symbol", "group", 10, "Symbol")]
    aggs[3]["params"]["orderBy"] = "_key"
    return visualization("stock-analytics-vis-latest", "Latest price and change", "metric", params, aggs, INDICATORS)


def signal_counts() -> dict:
    params = xy_params("histogram", [("1", "Signals", "histogram")], "Count", "Signal type")
    params["seriesParams"][0]["mode"] = "stacked"
    aggs = [{"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {"customLabel": "Signals"}},
            terms("2", "type", "segment", 10, "Signal type"), terms("3", "direction", "group", 3, "Direction")]
    return visualization("stock-analytics-vis-signal-counts", "Signal counts by type", "histogram", params, aggs, SIGNALS)


def signals_table() -> dict:
    meta, references = search_source(SIGNALS)
    return saved_object("search", "stock-analytics-search-signals", {
        "title": "Signals (newest first)", "description": "", "hits": 0, "version": 1,
        "columns": ["symbol", "type", "direction", "value", "detail"], "sort": [["ts", "desc"]],
        "kibanaSavedObjectMeta": meta,
    }, references)


def patterns_table() -> dict:
    """The candlestick patterns that are signals (``Analytics.signal_patterns``), newest first."""
    meta, references = search_source(SIGNALS)
    source = json.loads(meta["searchSourceJSON"])
    source["query"] = {"query": 'type : "candle_pattern"', "language": "kuery"}
    return saved_object("search", "stock-analytics-search-patterns", {
        "title": "Candlestick patterns (newest first)", "description": "", "hits": 0, "version": 1,
        "columns": ["symbol", "detail", "direction", "value"], "sort": [["ts", "desc"]],
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)},
    }, references)


def visualizations() -> list[dict]:
    return [
        symbol_control(),
        latest_price(),
        signal_counts(),
        time_chart("stock-analytics-vis-price", "Close, SMA 20 / 50 and Bollinger bands", INDICATORS, "line", "Price", [
            ("avg", "close", "Close", "line"), ("avg", "sma_20", "SMA 20", "line"),
            ("avg", "sma_50", "SMA 50", "line"), ("avg", "bb_upper", "Bollinger upper", "line"),
            ("avg", "bb_lower", "Bollinger lower", "line")]),
        signals_table(),
        time_chart("stock-analytics-vis-volume", "Volume", INDICATORS, "histogram", "Volume",
                   [("sum", "volume", "Volume", "histogram")]),
        time_chart("stock-analytics-vis-vwap", "VWAP and close", INDICATORS, "line", "Price",
                   [("avg", "vwap", "VWAP", "line"), ("avg", "close", "Close", "line")]),
        rsi_with_bands(),
        time_chart("stock-analytics-vis-macd", "MACD 12 26 9", INDICATORS, "line", "MACD", [
            ("avg", "macd_hist", "Histogram", "histogram"), ("avg", "macd", "MACD", "line"),
            ("avg", "macd_signal", "Signal", "line")]),
        time_chart("stock-analytics-vis-bars-5m", "5-minute bars: range, close and VWAP", BARS_5M, "line", "Price", [
            ("max", "high", "High", "line"), ("min", "low", "Low", "line"),
            ("avg", "close", "Close", "line"), ("avg", "vwap", "VWAP", "line")]),
        patterns_table(),
        time_chart("stock-analytics-vis-5m-rsi-macd", "5-minute candles: RSI 14 and MACD 12 26 9", BARS_5M, "line",
                   "Value", [("avg", "rsi_14", "RSI 14", "line"), ("avg", "macd_hist", "MACD histogram", "histogram"),
                             ("avg", "macd", "MACD", "line"), ("avg", "macd_signal", "MACD signal", "line")]),
    ]


# (x, y, w, h) on the 48-column dashboard grid, in the order of visualizations()
LAYOUT = [(0, 0, 10, 8), (10, 0, 20, 8), (30, 0, 18, 8), (0, 8, 32, 16), (32, 8, 16, 16),
          (0, 24, 32, 9), (32, 24, 16, 9), (0, 33, 24, 11), (24, 33, 24, 11), (0, 44, 48, 11),
          (0, 55, 20, 12), (20, 55, 28, 12)]


def dashboard(panels: list[dict]) -> dict:
    panels_json, references = [], []
    for index, (panel, (x, y, w, h)) in enumerate(zip(panels, LAYOUT, strict=True)):
        ref = f"panel_{index}"
        panels_json.append({"version": PANEL_VERSION, "panelIndex": str(index + 1), "panelRefName": ref,
                            "embeddableConfig": {}, "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(index + 1)}})
        references.append({"name": ref, "type": panel["type"], "id": panel["id"]})
    meta, _ = search_source(None)
    return saved_object("dashboard", DASHBOARD_ID, {
        "title": DASHBOARD_TITLE, "hits": 0, "version": 1,
        "description": "Enriched 1-minute bars, indicators and signals of the stock analytics job; "
                       "pick symbols with the Symbol control.",
        "panelsJSON": json.dumps(panels_json),
        "optionsJSON": json.dumps({"hidePanelTitles": False, "useMargins": True}),
        "timeRestore": True, "timeFrom": "now-1d", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 5000},
        "kibanaSavedObjectMeta": meta,
    }, references)


def all_objects() -> list[dict]:
    """Referenced objects first, so the file also reads top-down."""
    panels = visualizations()
    return [*(index_pattern(p) for p in INDEX_PATTERNS), *panels, dashboard(panels)]


def render() -> str:
    return "".join(json.dumps(obj, sort_keys=True) + "\n" for obj in all_objects())


def main() -> int:
    NDJSON.parent.mkdir(parents=True, exist_ok=True)
    NDJSON.write_text(render())
    print(f"wrote {NDJSON.relative_to(ROOT)} ({len(all_objects())} saved objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
