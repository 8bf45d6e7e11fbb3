"""Local entry point: ``python -m fetcher_lambda --once | --every SECONDS | --month YYYY-MM | --replay``.

Runs the same ``handler.invoke`` as the Lambda, with settings from the same environment variables.
``--once`` and ``--every`` follow the market hours like the Lambda (a run while the market is closed
makes no call and logs why); ``--ignore-market-hours`` (or ``FETCHER_IGNORE_MARKET_HOURS=true``) fetches
anyway. ``--month`` and ``--replay`` never check them.
Against the local services set ``KINESIS_ENDPOINT_URL``, ``DYNAMODB_ENDPOINT_URL``, dummy AWS
credentials and ``AV_API_KEY``; ``--create-resources`` creates the stream and the cursor
table if they are missing.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

from .config import ConfigError, Settings
from .deadline import Deadline
from .groups import Group
from .logs import configure_logging

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _month(value: str) -> str:
    if not MONTH.match(value):
        raise argparse.ArgumentTypeError(f"expected YYYY-MM, e.g. 2024-03; got {value!r}")
    return value


def _group(value: str) -> Group:
    try:
        number, count = (int(part) for part in value.split("/"))
        return Group(number, count)
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"expected I/G with 1 <= I <= G, e.g. 2/3; got {value!r}") from None


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = as fast as possible)")
    return number


def build_parser() -> argparse.ArgumentParser:
    from .replay import DEFAULT_SPEED
    from .samples import SAMPLE_DIR

    parser = argparse.ArgumentParser(
        prog="python -m fetcher_lambda",
        description="Fetch Alpha Vantage intraday bars into Kinesis (the Lambda's code, run locally).",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one run over SYMBOLS, like one Lambda invocation")
    mode.add_argument("--every", type=_positive, metavar="SECONDS", help="run every SECONDS until interrupted")
    mode.add_argument("--month", type=_month, metavar="YYYY-MM",
                      help="backfill one month (outputsize=full); the cursor is neither read nor moved")
    mode.add_argument("--replay", action="store_true", help="put the shipped sample data set to the stream")
    parser.add_argument("--speed", type=_non_negative,
                        help=f"--replay: bar minutes per second (default {DEFAULT_SPEED:g}; 0 = as fast as possible)")
    parser.add_argument("--sample-dir", type=Path, help=f"--replay: directory of sample files (default {SAMPLE_DIR})")
    parser.add_argument("--group", type=_group, default=Group(), metavar="I/G",
                        help="--once/--every: fetch only group I of G of SYMBOLS, with 1/G of AV_CALLS_PER_MINUTE "
                             "(what the schedule of group I passes)")
    parser.add_argument("--ignore-market-hours", action="store_true",
                        help="--once/--every: fetch even while the market is closed (tests, replays of a "
                             "past day); same as FETCHER_IGNORE_MARKET_HOURS=true")
    parser.add_argument("--create-resources", action="store_true",
                        help="create the stream (and, for live runs, the cursor table) if missing")
    return parser


def _run_replay(settings: Settings, args: argparse.Namespace) -> int:
    from .aws import kinesis_client
    from .kinesis import ensure_stream
    from .replay import load_bars, replay

    client = kinesis_client(settings)
    if args.create_resources:
        ensure_stream(client, settings.stream_name)
    stats = replay(client, settings.stream_name, load_bars(args.sample_dir), speed=args.speed)
    print(f"replay: done, {stats.bars} bars in {stats.seconds:.1f}s ({stats.put_records_calls} PutRecords calls)")
    return 0


def _run_fetch(settings: Settings, args: argparse.Namespace) -> int:
    from .cursor import ensure_table
    from .handler import default_clients, invoke
    from .kinesis import ensure_stream

    clients = default_clients(settings, with_cursor=not args.month)
    if args.create_resources:
        ensure_stream(clients.kinesis, settings.stream_name)
        if clients.dynamodb is not None:
            ensure_table(clients.dynamodb, settings.cursor_table)
    if args.month:
        summary = invoke(settings, clients, Deadline.after(settings.backfill_budget_s), month=args.month)
        return 1 if summary.symbols_failed else 0
    if args.once:
        summary = invoke(settings, clients, Deadline.after(settings.local_budget_s), group=args.group)
        return 1 if summary.symbols_failed else 0
    run_number = 0
    while True:
        started = time.monotonic()
        run_number += 1
        # Like a scheduled Lambda whose timeout is FETCHER_LOCAL_BUDGET_SECONDS: a run longer than the
        # interval delays the next one instead of being cut short.
        invoke(settings, clients, Deadline.after(settings.local_budget_s),
               invocation_id=f"local-{run_number}-{uuid.uuid4().hex[:8]}", group=args.group)
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .replay import DEFAULT_SPEED
    from .samples import SAMPLE_DIR

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.replay and (args.speed is not None or args.sample_dir is not None):
        parser.error("--speed and --sample-dir only apply to --replay")
    if (args.replay or args.month) and args.group != Group():
        parser.error("--group only applies to --once and --every")
    if (args.replay or args.month) and args.ignore_market_hours:
        parser.error("--ignore-market-hours only applies to --once and --every (--month and --replay never check)")
    args.speed = DEFAULT_SPEED if args.speed is None else args.speed
    args.sample_dir = args.sample_dir or SAMPLE_DIR
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.ignore_market_hours:
            settings = replace(settings, ignore_market_hours=True)
        configure_logging(settings.log_level)
        if args.replay:
            return _run_replay(settings, args)
        return _run_fetch(settings, args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # noqa: BLE001 - turn AWS/setup failures into one readable line with the next step
        return _report_failure(err)


def _report_failure(err: Exception) -> int:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    from .logs import redact

    if isinstance(err, NoCredentialsError):
        print("error: no AWS credentials; for the local services any values do, e.g. "
              "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local", file=sys.stderr)
    elif isinstance(err, EndpointConnectionError):
        print(f"error: {redact(str(err))}; are the local services running "
              "(python -m stack.services status)?", file=sys.stderr)
    else:
        raise err
    return 1


if __name__ == "__main__":
    sys.exit(main())
