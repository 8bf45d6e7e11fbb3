"""The OpenSearch Dashboards saved objects and their importer.

The objects are checked against the job's index templates (every field a visualization uses exists
with a type that suits its aggregation), against each other (references, dashboard panels), and the
importer against a real HTTP server on a local socket that records what it receives.
"""

from __future__ import annotations

import base64
import json
import threading
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dashboards import import_saved_objects, saved_objects

ROOT = Path(__file__).resolve().parent.parent
NDJSON = ROOT / "dashboards" / "opensearch" / "stock-analytics.ndjson"
TEMPLATES = ROOT / "flink_job" / "index_templates"
NUMERIC = {"double", "long"}
METRIC_AGGS = {"avg", "sum", "min", "max"}
JSON_ATTRIBUTES = ("visState", "uiStateJSON", "panelsJSON", "optionsJSON", "fields", "fieldFormatMap")


# --- the file ----------------------------------------------------------------------------------------
def load_objects() -> list[dict]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines() if line.strip()]


def mapping(index: str) -> dict[str, str]:
    """Dotted field name -> OpenSearch type, from the index template the job installs."""
    template = json.loads((TEMPLATES / f"{index}.json").read_text())

    def walk(properties: dict, prefix: str = "") -> dict[str, str]:
        out = {}
        for name, spec in properties.items():
            out.update(walk(spec["properties"], f"{prefix}{name}.") if "properties" in spec
                       else {prefix + name: spec["type"]})
        return out

    return walk(template["template"]["mappings"]["properties"])


OBJECTS = load_objects()
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}
PATTERNS = {o["id"]: o["attributes"] for o in OBJECTS if o["type"] == "index-pattern"}
PATTERN_TITLES = {a["title"]: a for a in PATTERNS.values()}


def of_type(kind: str) -> list[dict]:
    return [o for o in OBJECTS if o["type"] == kind]


def vis_state(obj: dict) -> dict:
    return json.loads(obj["attributes"]["visState"])


def search_source(obj: dict) -> dict:
    return json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def reference(obj: dict, name: str) -> dict:
    matches = [r for r in obj["references"] if r["name"] == name]
    assert len(matches) == 1, f"{obj['id']}: reference {name!r} missing or repeated"
    return matches[0]


def index_of(obj: dict, ref_name: str) -> str:
    """The index (pattern title) an object's named index-pattern reference points to."""
    ref = reference(obj, ref_name)
    assert ref["type"] == "index-pattern"
    return PATTERNS[ref["id"]]["title"]


def test_the_file_is_what_the_generator_writes():
    assert NDJSON.read_text() == saved_objects.render(), (
        "stock-analytics.ndjson is stale: run .venv/bin/python -m dashboards.saved_objects")


def test_every_line_is_a_saved_object_with_valid_embedded_json():
    assert len(OBJECTS) == len(BY_KEY), "ids must be unique per type"
    for obj in OBJECTS:
        assert {"id", "type", "attributes", "references", "migrationVersion"} <= obj.keys()
        assert obj["id"].startswith("stock-analytics-"), "stable, recognisable ids"
        for name in JSON_ATTRIBUTES:
            if name in obj["attributes"]:
                json.loads(obj["attributes"][name])
        if "kibanaSavedObjectMeta" in obj["attributes"]:
            search_source(obj)


def test_index_patterns_match_the_index_templates():
    expected = {"stock-indicators": "ts", "stock-signals": "ts", "stock-bars-5m": "window_start"}
    assert {a["title"]: a["timeFieldName"] for a in PATTERNS.values()} == expected
    for title, time_field in expected.items():
        fields = mapping(title)
        assert fields[time_field] == "date"
        listed = {f["name"]: f for f in json.loads(PATTERN_TITLES[title]["fields"])}
        assert set(fields) <= set(listed), "every mapped field is listed, so no field refresh is needed"
        for name, kind in fields.items():
            expected_type = {"keyword": "string", "text": "string", "date": "date", "boolean": "boolean"}.get(kind, "number")
            assert listed[name]["type"] == expected_type and listed[name]["esTypes"] == [kind]
            stored_only = name == "index_period"  # names the record's index: neither indexed nor aggregated
            assert listed[name]["aggregatable"] == (kind != "text" and not stored_only)
            assert listed[name]["searchable"] == (not stored_only)


def test_every_reference_resolves_inside_the_file():
    for obj in OBJECTS:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in BY_KEY, f"{obj['id']} -> missing {ref['type']} {ref['id']}"
        names = [r["name"] for r in obj["references"]]
        assert len(names) == len(set(names))
        source = search_source(obj) if "kibanaSavedObjectMeta" in obj["attributes"] else {}
        if "indexRefName" in source:
            reference(obj, source["indexRefName"])
        if obj["type"] == "visualization":
            for control in vis_state(obj)["params"].get("controls", []):
                reference(obj, control["indexPatternRefName"])


def assert_field(index: str, field: str, kinds: set[str], where: str) -> None:
    fields = mapping(index)
    assert field in fields, f"{where}: {field} is not in the {index} mapping"
    assert fields[field] in kinds, f"{where}: {field} is {fields[field]} in {index}, needs one of {sorted(kinds)}"


def check_aggs(obj: dict, index: str) -> set[str]:
    used = set()
    for agg in vis_state(obj)["aggs"]:
        params, where = agg["params"], f"{obj['id']} agg {agg['id']}"
        if agg["type"] in METRIC_AGGS:
            assert_field(index, params["field"], NUMERIC, where)
        elif agg["type"] == "top_hits":
            assert_field(index, params["field"], NUMERIC, where)
            assert_field(index, params["sortField"], {"date"}, where)
        elif agg["type"] == "terms":
            assert_field(index, params["field"], {"keyword"}, where)
        elif agg["type"] == "date_histogram":
            assert_field(index, params["field"], {"date"}, where)
            assert params["field"] == PATTERN_TITLES[index]["timeFieldName"]
        else:
            assert agg["type"] == "count", f"{where}: unexpected aggregation {agg['type']}"
        used.add(params.get("field"))
    return used


def check_tsvb(obj: dict) -> set[str]:
    params = vis_state(obj)["params"]
    index = params["index_pattern"]
    assert index in PATTERN_TITLES, f"{obj['id']}: TSVB index {index} has no index pattern in the file"
    assert_field(index, params["time_field"], {"date"}, obj["id"])
    used = set()
    for series in params["series"]:
        for metric in series["metrics"]:
            if metric["type"] == "static":
                float(metric["value"])
                used.add(f"static:{metric['value']}")
            else:
                assert metric["type"] in METRIC_AGGS
                assert_field(index, metric["field"], NUMERIC, obj["id"])
                used.add(metric["field"])
    return used


def fields_used() -> dict[str, set[str]]:
    """Visualization id -> the fields (and static lines) it draws, after checking each against the mapping."""
    used = {}
    for obj in of_type("visualization"):
        state = vis_state(obj)
        if state["type"] == "metrics":
            used[obj["id"]] = check_tsvb(obj)
        elif state["type"] == "input_control_vis":
            used[obj["id"]] = set()
            for control in state["params"]["controls"]:
                index = index_of(obj, control["indexPatternRefName"])
                assert_field(index, control["fieldName"], {"keyword"}, obj["id"])
                used[obj["id"]].add(control["fieldName"])
        else:
            used[obj["id"]] = check_aggs(obj, index_of(obj, search_source(obj)["indexRefName"]))
    return used


def test_every_field_exists_in_its_index_with_a_fitting_type():
    used = fields_used()
    for search in of_type("search"):
        index = index_of(search, search_source(search)["indexRefName"])
        for column in search["attributes"]["columns"]:
            assert column in mapping(index)
        for field, _ in search["attributes"]["sort"]:
            assert_field(index, field, {"date"}, search["id"])
    drawn = set().union(*used.values())
    required = {"close", "sma_20", "sma_50", "bb_upper", "bb_lower", "volume", "rsi_14", "static:30",
                "static:70", "macd", "macd_signal", "macd_hist", "vwap", "return_1", "type", "symbol"}
    assert required <= drawn, f"not drawn: {sorted(required - drawn)}"


def test_the_dashboard_has_every_panel_a_symbol_filter_a_day_and_auto_refresh():
    (board,) = of_type("dashboard")
    attrs = board["attributes"]
    assert attrs["title"] == "Real-time stock analytics"
    assert (attrs["timeRestore"], attrs["timeFrom"], attrs["timeTo"]) == (True, "now-1d", "now")
    assert attrs["refreshInterval"]["pause"] is False and 0 < attrs["refreshInterval"]["value"] <= 10_000
    panels = json.loads(attrs["panelsJSON"])
    targets = []
    for panel in panels:
        ref = reference(board, panel["panelRefName"])
        targets.append(BY_KEY[(ref["type"], ref["id"])])
        grid = panel["gridData"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 48 and grid["w"] > 0 and grid["h"] > 0
    cells = [(x, y) for p in panels for x in range(p["gridData"]["x"], p["gridData"]["x"] + p["gridData"]["w"])
             for y in range(p["gridData"]["y"], p["gridData"]["y"] + p["gridData"]["h"])]
    assert len(cells) == len(set(cells)), "panels overlap"
    on_board = {(o["type"], o["id"]) for o in targets}
    assert on_board == {(o["type"], o["id"]) for o in OBJECTS if o["type"] in ("visualization", "search")}
    controls = [vis_state(o)["params"]["controls"] for o in targets
                if o["type"] == "visualization" and vis_state(o)["type"] == "input_control_vis"]
    assert [c["fieldName"] for group in controls for c in group] == ["symbol"]


# --- the importer against a real local HTTP server ---------------------------------------------------
def received_objects(request: dict) -> list[dict]:
    """The saved objects in the file part of an import request."""
    (part,) = multipart_parts(request)
    return [json.loads(line) for line in part.get_payload(decode=True).splitlines() if line.strip()]


class RecordingServer:
    """An HTTP server on a free local port that records each request and answers a set response,
    or by default what OpenSearch Dashboards answers a good import: the number of objects it got."""

    def __init__(self, status: int = 200, body: dict | None = None):
        self.requests: list[dict] = []
        self.status, self.body = status, body
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length)})
                body = outer.body
                if body is None:
                    body = {"success": True, "successCount": len(received_objects(outer.requests[-1]))}
                payload = json.dumps(body).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "RecordingServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def multipart_parts(request: dict) -> list:
    content_type = request["headers"]["Content-Type"]
    message = BytesParser(policy=policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request["body"])
    assert message.is_multipart()
    return list(message.iter_parts())


def test_importer_posts_the_file_as_multipart_with_xsrf_header_and_basic_auth(monkeypatch, capsys):
    monkeypatch.setenv("OSD_PASSWORD", "s3cret-pass")
    with RecordingServer() as server:
        code = import_saved_objects.main([f"{server.url}/_dashboards", "--user", "admin"])
    assert code == 0
    (request,) = server.requests
    assert request["path"] == "/_dashboards/api/saved_objects/_import?overwrite=true"
    assert request["headers"]["osd-xsrf"] == "true"
    assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cret-pass").decode()
    assert request["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    (part,) = multipart_parts(request)
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename() == "stock-analytics.ndjson"
    assert part.get_payload(decode=True) == NDJSON.read_bytes()
    out = capsys.readouterr()
    # The count is the server's, of the objects it received: all of the file's.
    assert f"imported {len(OBJECTS)} saved objects" in out.out
    assert "s3cret-pass" not in out.out + out.err


def test_importer_without_user_sends_no_credentials():
    with RecordingServer() as server:
        assert import_saved_objects.main([server.url + "/"]) == 0
    (request,) = server.requests
    assert request["path"] == "/api/saved_objects/_import?overwrite=true"
    assert "Authorization" not in request["headers"]


def test_importer_needs_the_password_in_the_environment_for_a_user(monkeypatch, capsys):
    monkeypatch.delenv("OSD_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exit_:
        import_saved_objects.main(["http://127.0.0.1:9", "--user", "admin"])
    assert exit_.value.code == 2
    assert "OSD_PASSWORD" in capsys.readouterr().err


def test_importer_lists_objects_that_failed(capsys):
    failed = {"success": False, "successCount": 12, "errors": [
        {"id": "stock-analytics-vis-rsi", "type": "visualization", "error": {"type": "unsupported_type"}}]}
    with RecordingServer(body=failed) as server:
        assert import_saved_objects.main([server.url]) == 1
    err = capsys.readouterr().err
    assert "imported 12 objects" in err and "visualization stock-analytics-vis-rsi: unsupported_type" in err


@pytest.mark.parametrize("status, hint", [(404, "/_dashboards"), (401, "OSD_PASSWORD"), (403, "OSD_PASSWORD"),
                                          (500, "HTTP 500")])
def test_importer_explains_http_errors(status, hint, monkeypatch, capsys):
    monkeypatch.setenv("OSD_PASSWORD", "s3cret-pass")
    with RecordingServer(status=status, body={"statusCode": status, "message": "nope"}) as server:
        assert import_saved_objects.main([server.url, "--user", "admin"]) == 1
    out = capsys.readouterr()
    assert hint in out.err and "s3cret-pass" not in out.out + out.err


def test_importer_reports_an_unreachable_url(capsys):
    with RecordingServer() as server:
        url = server.url  # the port is closed again when the server is gone
    assert import_saved_objects.main([url]) == 1
    assert "cannot reach" in capsys.readouterr().err
