"""Import the dashboard's saved objects into OpenSearch Dashboards (overwriting earlier imports).

    OSD_PASSWORD=... .venv/bin/python -m dashboards.import_saved_objects URL [--user USER] [--file NDJSON]

URL is the Dashboards base URL, the one its pages are under: on an Amazon OpenSearch Service domain
``https://DOMAIN-ENDPOINT/_dashboards``, on a self-managed install e.g. ``http://localhost:5601``.
With --user, basic authentication uses the password from the environment variable OSD_PASSWORD (it
is never printed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

from dashboards.saved_objects import DASHBOARD_TITLE, NDJSON

PASSWORD_ENV = "OSD_PASSWORD"
IMPORT_PATH = "/api/saved_objects/_import"


class ImportFailed(RuntimeError):
    """The import did not happen, or not completely; the message says why and what to try."""


def import_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}{IMPORT_PATH}?overwrite=true"


def import_saved_objects(base_url: str, ndjson: Path, auth: tuple[str, str] | None = None,
                         timeout_s: float = 60.0) -> int:
    """POST the file to the saved-objects import API; returns how many objects were imported."""
    url = import_url(base_url)
    try:
        response = requests.post(
            url, headers={"osd-xsrf": "true"}, auth=auth, timeout=timeout_s,
            files={"file": (ndjson.name, ndjson.read_bytes(), "application/ndjson")},
        )
    except requests.RequestException as err:
        raise ImportFailed(f"cannot reach {url} ({type(err).__name__}); check the URL and your network "
                           "access to the domain") from None
    if response.status_code in (401, 403):
        raise ImportFailed(f"HTTP {response.status_code}: not allowed. Pass --user and set {PASSWORD_ENV} "
                           "(a user with write access to saved objects)")
    if response.status_code == 404:
        raise ImportFailed(f"HTTP 404 at {url}: this is not an OpenSearch Dashboards base URL. On AWS it ends "
                           "in /_dashboards, e.g. https://DOMAIN-ENDPOINT/_dashboards")
    if response.status_code >= 300:
        raise ImportFailed(f"HTTP {response.status_code} from {url}: {response.text[:500]}")
    try:
        result = response.json()
    except ValueError:
        raise ImportFailed(f"{url} answered with something other than JSON; is this OpenSearch Dashboards?") from None
    if not result.get("success"):
        problems = "; ".join(f"{e.get('type')} {e.get('id')}: {e.get('error', {}).get('type', e.get('error'))}"
                             for e in result.get("errors", [])) or str(result)[:500]
        raise ImportFailed(f"imported {result.get('successCount', 0)} objects, others failed: {problems}")
    return int(result.get("successCount", 0))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.import_saved_objects",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("url", help="Dashboards base URL; on AWS https://DOMAIN-ENDPOINT/_dashboards")
    parser.add_argument("--user", help=f"basic-auth user; the password comes from ${PASSWORD_ENV}")
    parser.add_argument("--file", type=Path, default=NDJSON, help="saved objects (ndjson)")
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https"):
        parser.error("URL must start with http:// or https://")
    auth = None
    if args.user:
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            parser.error(f"--user needs the password in the environment variable {PASSWORD_ENV}")
        auth = (args.user, password)
    try:
        count = import_saved_objects(args.url, args.file, auth)
    except (ImportFailed, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"imported {count} saved objects into {args.url}; open the dashboard \"{DASHBOARD_TITLE}\" there")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
