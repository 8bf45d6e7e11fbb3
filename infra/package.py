"""Build the deployment artifacts: ``python -m infra.package [OUTPUT_DIR]`` (default ``dist/``).

- ``flink-app.zip``: ``main.py`` (from ``infra/flink_main.py``), ``lib/pyflink-dependencies.jar`` and
  ``python/``, the folder the run options ship to the workers (``pyFiles``): the ``flink_job`` package
  (its ``.py`` files, ``core/`` included, and ``index_templates/``) and ``tzdata``, so time zones
  never depend on the runtime image. This is the layout the application's run options in ``infra/cloudformation.yaml``
  point to.
- ``fetcher-lambda.zip``: the ``fetcher_lambda`` package plus ``requests``, ``tzdata``, ``holidays``
  (the NYSE calendar of the market hours) and their dependencies, at the versions installed in this
  venv (the Lambda runtime ships boto3 but not requests or holidays, and its time zone files are the
  image's).
- ``alerts-lambda.zip``: the ``alerts`` package (its ``.py`` files and the default ``rules.json``)
  plus ``tzdata`` (alert times are New York time, and the runtime may lack a zone database).
- Both Lambda zips also hold ``lambda_kit``, the settings, secrets and log toolkit they share.
- ``index-templates-loader.zip``: ``index_templates_loader.py``, the job's ``index_templates/`` and
  ``flink_job/core/index_lifecycle.py`` (the index families and their retention), the function that puts
  the templates and retention policies from inside the VPC, plus ``opensearch-py`` and its
  dependencies (boto3 it takes from the runtime). The client is pinned to 3.0.0, the newest release
  whose declared dependencies are all pure Python: 3.1.0 and later also require
  ``opensearch-protobufs``, hence ``grpcio`` and ``protobuf``, compiled wheels that no code of the
  client imports yet (its gRPC transport is to come).

Zips are deterministic (sorted entries, fixed timestamps and modes), so an unchanged build gives
the same bytes and ``deploy.sh`` uploads the same content under the same hash.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
JAR = ROOT / "flink_job" / "target" / "pyflink-dependencies.jar"
FLINK_ZIP = "flink-app.zip"
LAMBDA_ZIP = "fetcher-lambda.zip"
LOADER_ZIP = "index-templates-loader.zip"
ALERTS_ZIP = "alerts-lambda.zip"
TEMPLATES = ROOT / "flink_job" / "index_templates"
# Third-party distributions the fetcher imports that the Lambda runtime lacks (boto3 it has).
LAMBDA_REQUIREMENTS = ("requests", "tzdata", "holidays")
ALERTS_REQUIREMENTS = ("tzdata",)
# What both Lambdas import besides their own package (settings, secrets, JSON log lines): in each zip.
LAMBDA_SHARED = ("lambda_kit",)
LOADER_REQUIREMENTS = ("opensearch-py",)
# The folder of flink-app.zip that the run options' pyFiles ship to the TaskManagers: a pyFiles entry
# is put on the workers' path as is, so it must be a folder that contains the package.
FLINK_PYTHON_DIR = "python"
# The Lambda runtime of infra/cloudformation.yaml: wheels are chosen for it, pure Python only,
# so the zip does not depend on the machine that builds it.
LAMBDA_PYTHON = "3.12"
# Files only the local tools use: replay data for `python -m fetcher_lambda replay`.
LAMBDA_EXCLUDED_DIRS = {"sample_data", "__pycache__"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(RuntimeError):
    """An input is missing; the message says how to produce it."""


def _package_files(package: Path, excluded_dirs: set[str], suffixes: tuple[str, ...]) -> Iterator[Path]:
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        if path.is_file() and path.suffix in suffixes and not excluded_dirs & set(relative.parts[:-1]):
            yield path


def write_zip(target: Path, entries: Iterable[tuple[str, Path]]) -> Path:
    """Zip ``(name in archive, source file)`` pairs deterministically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for name, source in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            # Jars are compressed already: storing them saves time and no space.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".jar") else zipfile.ZIP_DEFLATED
            with source.open("rb") as src, archive.open(info, "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return target


def flink_entries() -> list[tuple[str, Path]]:
    if not JAR.exists():
        raise PackageError(f"{JAR} is missing: run `make jar` first")
    package = ROOT / "flink_job"
    files = _package_files(package, {"target", "__pycache__"}, (".py", ".json"))
    # JSON only from index_templates/: nothing else in the package is read at run time.
    code = [p for p in files if p.suffix == ".py" or p.parent.name == "index_templates"]
    return [
        ("main.py", ROOT / "infra" / "flink_main.py"),
        ("lib/pyflink-dependencies.jar", JAR),
        *((f"{FLINK_PYTHON_DIR}/flink_job/{p.relative_to(package).as_posix()}", p) for p in code),
        *((f"{FLINK_PYTHON_DIR}/{name}", path) for name, path in installed_files("tzdata")),
    ]


def installed_files(distribution: str) -> list[tuple[str, Path]]:
    """(path relative to site-packages, file) of an installed distribution's importable files."""
    try:
        files = metadata.files(distribution) or []
    except metadata.PackageNotFoundError:
        raise PackageError(f"{distribution} is not installed in {sys.prefix}: run `make setup`") from None
    keep = [f for f in files if ".dist-info" not in f.parts[0] and "__pycache__" not in f.parts
            and f.parts[0] != ".." and f.suffix != ".pyc"]
    if not keep:
        raise PackageError(f"{distribution} has no files to package")
    return [(f.as_posix(), Path(f.locate()).resolve()) for f in keep]


def pinned_requirements(names: Iterable[str]) -> list[str]:
    """``name==version`` for the named distributions and their dependencies, as installed here."""
    pins: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in pins:
            continue
        try:
            pins[key] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise PackageError(f"{name} is not installed in {sys.prefix}: run `make setup`") from None
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                pending.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def vendor(requirements: list[str], target: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--no-deps", "--target", str(target), "--only-binary=:all:", "--python-version", LAMBDA_PYTHON,
        "--implementation", "cp", "--abi", "none", "--platform", "any", *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"pip could not fetch {' '.join(requirements)} for the Lambda zip "
                           f"(check access to PyPI):\n{result.stderr.strip()}")


def lambda_entries(vendored: Path, name: str = "fetcher_lambda",
                   suffixes: tuple[str, ...] = (".py",)) -> list[tuple[str, Path]]:
    """A Lambda package's files (``name``), the shared ``LAMBDA_SHARED`` packages' and the vendored
    libraries, at the zip's root."""
    code = ((package, path) for package in (name, *LAMBDA_SHARED)
            for path in _package_files(ROOT / package, LAMBDA_EXCLUDED_DIRS, suffixes))
    return [*((f"{package}/{p.relative_to(ROOT / package).as_posix()}", p) for package, p in code),
            *vendored_entries(vendored)]


def vendored_entries(vendored: Path) -> list[tuple[str, Path]]:
    """The libraries ``vendor`` installed, at the zip's root."""
    # bin/ holds console scripts with this machine's interpreter path: not needed by the function.
    libraries = (p for p in vendored.rglob("*") if p.is_file() and p.relative_to(vendored).parts[0] != "bin")
    return [(p.relative_to(vendored).as_posix(), p) for p in libraries if "__pycache__" not in p.parts]


def loader_entries(vendored: Path) -> list[tuple[str, Path]]:
    return [
        ("index_templates_loader.py", ROOT / "infra" / "index_templates_loader.py"),
        # The families and their retention, shared with the job: a pure module, no pyflink.
        ("flink_job/__init__.py", ROOT / "flink_job" / "__init__.py"),
        ("flink_job/core/__init__.py", ROOT / "flink_job" / "core" / "__init__.py"),
        ("flink_job/core/index_lifecycle.py", ROOT / "flink_job" / "core" / "index_lifecycle.py"),
        *((f"index_templates/{p.name}", p) for p in TEMPLATES.glob("*.json")),
        *vendored_entries(vendored),
    ]


def build(output: Path) -> list[Path]:
    written = [write_zip(output / FLINK_ZIP, flink_entries())]
    with tempfile.TemporaryDirectory(prefix="loader-vendor-") as vendored:
        vendor(pinned_requirements(LOADER_REQUIREMENTS), Path(vendored))
        written.append(write_zip(output / LOADER_ZIP, loader_entries(Path(vendored))))
    with tempfile.TemporaryDirectory(prefix="lambda-vendor-") as vendored:
        vendor(pinned_requirements(LAMBDA_REQUIREMENTS), Path(vendored))
        written.append(write_zip(output / LAMBDA_ZIP, lambda_entries(Path(vendored))))
    with tempfile.TemporaryDirectory(prefix="alerts-vendor-") as vendored:
        vendor(pinned_requirements(ALERTS_REQUIREMENTS), Path(vendored))
        written.append(write_zip(output / ALERTS_ZIP, lambda_entries(Path(vendored), "alerts", (".py", ".json"))))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Flink application and Lambda zips")
    parser.add_argument("output", nargs="?", type=Path, default=ROOT / "dist",
                        help="directory the zips are written to (default: dist/)")
    args = parser.parse_args(argv)
    try:
        written = build(args.output)
    except PackageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
