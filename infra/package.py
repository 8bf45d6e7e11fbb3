"""Build the deployment artifacts: ``python -m infra.package [OUTPUT_DIR]`` (default ``dist/``).

- ``flink-app.zip``: ``main.py`` (from ``infra/flink_main.py``), ``lib/pyflink-dependencies.jar`` and
  ``python/``, the folder the run options ship to the workers (``pyFiles``): the ``flink_job`` package
  (its ``.py`` files, ``core/`` included, and ``index_templates/``) and ``tzdata``, so time zones
  never depend on the runtime image. This is the layout the application's run options in ``infra/cloudformation.yaml``
  point to.
- ``fetcher-lambda.zip``: the ``fetcher_lambda`` package plus the libraries of
  ``requirements/fetcher-lambda.txt`` (``requests``, ``tzdata``, ``holidays`` and their dependencies:
  the Lambda runtime ships boto3 but not these, and its time zone files are the image's).
- ``alerts-lambda.zip``: the ``alerts`` package (its ``.py`` files and the default ``rules.json``)
  plus the libraries of ``requirements/alerts-lambda.txt`` (``tzdata``: alert times are New York
  time, and the runtime may lack a zone database).
- Both Lambda zips also hold ``lambda_kit``, the settings, secrets and log toolkit they share.
- ``index-templates-loader.zip``: ``index_templates_loader.py``, the job's ``index_templates/`` and
  ``flink_job/core/index_lifecycle.py`` (the index families and their retention), the function that puts
  the templates and retention policies from inside the VPC, plus ``opensearch-py`` and its
  dependencies (boto3 it takes from the runtime). The client is pinned to 3.0.0, the newest release
  whose declared dependencies are all pure Python: 3.1.0 and later also require
  ``opensearch-protobufs``, hence ``grpcio`` and ``protobuf``, compiled wheels that no code of the
  client imports yet (its gRPC transport is to come).

Zips are reproducible: two clones of one commit give byte-identical zips. The Lambdas' libraries are
installed from their lock files, hashes checked, without dependency resolution; entries are sorted,
with fixed timestamps and modes, and no compiled ``.pyc``; the connector jar, which Maven stamps with
the build's time (and whose order may follow the file system's), is rewritten the same way. So an
unchanged build gives the same bytes and ``deploy.sh`` uploads the same content under the same hash.
"""

from __future__ import annotations

import argparse
import shutil
import stat
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
# What each Lambda zip vendors: lock files compiled with hashes for the Lambda's Python from
# requirements/*.in (`make lock`), at the versions the local runs and the tests use.
REQUIREMENTS = ROOT / "requirements"
LAMBDA_LOCK = REQUIREMENTS / "fetcher-lambda.txt"
ALERTS_LOCK = REQUIREMENTS / "alerts-lambda.txt"
LOADER_LOCK = REQUIREMENTS / "loader-lambda.txt"
# What both Lambdas import besides their own package (settings, secrets, JSON log lines): in each zip.
LAMBDA_SHARED = ("lambda_kit",)
# The folder of flink-app.zip that the run options' pyFiles ship to the TaskManagers: a pyFiles entry
# is put on the workers' path as is, so it must be a folder that contains the package.
FLINK_PYTHON_DIR = "python"
# The Lambda runtime of infra/cloudformation.yaml: wheels are chosen for it, pure Python only,
# so the zip does not depend on the machine that builds it.
LAMBDA_PYTHON = "3.12"
# Files only the local tools use: replay data for `python -m fetcher_lambda replay`.
LAMBDA_EXCLUDED_DIRS = {"sample_data", "__pycache__"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
UNIX = 3  # the "made by" system of every entry, whatever builds the zip


class PackageError(RuntimeError):
    """An input is missing; the message says how to produce it."""


def _package_files(package: Path, excluded_dirs: set[str], suffixes: tuple[str, ...]) -> Iterator[Path]:
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        if path.is_file() and path.suffix in suffixes and not excluded_dirs & set(relative.parts[:-1]):
            yield path


def _entry(name: str, compress_type: int) -> zipfile.ZipInfo:
    """A zip entry's header that depends on its name only: fixed time, system and mode."""
    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    info.create_system = UNIX
    if name.endswith("/"):
        info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: the MS-DOS directory flag
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = compress_type
    return info


def write_zip(target: Path, entries: Iterable[tuple[str, Path]]) -> Path:
    """Zip ``(name in archive, source file)`` pairs deterministically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as archive:
        for name, source in sorted(entries):
            # Jars are compressed already: storing them saves time and no space.
            info = _entry(name, zipfile.ZIP_STORED if name.endswith(".jar") else zipfile.ZIP_DEFLATED)
            with source.open("rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _jar_order(name: str) -> tuple[int, str]:
    # The manifest first, as java.util.jar.JarInputStream expects it; then by name.
    return (0 if name in ("META-INF/", "META-INF/MANIFEST.MF") else 1, name)


def normalized_jar(jar: Path, target: Path) -> Path:
    """``jar`` rewritten reproducibly: the same files, sorted, with fixed times and modes, and no
    build date in Maven's ``pom.properties``."""
    with zipfile.ZipFile(jar) as source, zipfile.ZipFile(target, "w") as out:
        for name in sorted(dict.fromkeys(source.namelist()), key=_jar_order):
            info = _entry(name, zipfile.ZIP_DEFLATED)
            if name.endswith("/"):
                out.writestr(info, b"")
                continue
            if name.endswith("/pom.properties"):
                # Maven writes the build's date into it as a comment line.
                kept = [line for line in source.read(name).splitlines(keepends=True) if not line.startswith(b"#")]
                out.writestr(info, b"".join(kept))
                continue
            with source.open(name) as src, out.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return target


def flink_entries(jar: Path | None = None) -> list[tuple[str, Path]]:
    """The application's files; the connector jar is ``jar`` if given (``build`` passes the one
    ``normalized_jar`` wrote), else the one Maven built."""
    if not JAR.exists():
        raise PackageError(f"{JAR} is missing: run `make jar` first")
    package = ROOT / "flink_job"
    files = _package_files(package, {"target", "__pycache__"}, (".py", ".json"))
    # JSON only from index_templates/: nothing else in the package is read at run time.
    code = [p for p in files if p.suffix == ".py" or p.parent.name == "index_templates"]
    return [
        ("main.py", ROOT / "infra" / "flink_main.py"),
        ("lib/pyflink-dependencies.jar", jar or JAR),
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


def vendor(lock: Path, target: Path) -> None:
    """Install the libraries of ``lock`` into ``target``: exactly its pins, hashes checked, for the
    Lambda's Python, pure-Python wheels only, nothing compiled."""
    if not lock.exists():
        raise PackageError(f"{lock} is missing: run `make lock`")
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--no-deps", "--require-hashes", "--target", str(target), "--only-binary=:all:",
        "--python-version", LAMBDA_PYTHON, "--implementation", "cp", "--abi", "none", "--platform", "any",
        "--requirement", str(lock),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"pip could not install {lock.relative_to(ROOT)} for the Lambda zip "
                           f"(check access to PyPI; after changing a requirements/*.in, run `make lock`):\n"
                           f"{result.stderr.strip()}")
    for record in target.glob("*.dist-info/RECORD"):
        _drop_scripts(record)


def _drop_scripts(record: Path) -> None:
    """Leave the console scripts out of a distribution's RECORD, as they are left out of the zip
    (``vendored_entries``): their lines hold the hash of a file whose first line names the
    interpreter that installed it, so a clone elsewhere would write another RECORD."""
    lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(("../", "bin/"))]
    if kept != lines:
        record.write_text("".join(kept), encoding="utf-8")


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
    return [(p.relative_to(vendored).as_posix(), p) for p in libraries
            if "__pycache__" not in p.parts and p.suffix != ".pyc"]


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
    if not JAR.exists():
        raise PackageError(f"{JAR} is missing: run `make jar` first")
    with tempfile.TemporaryDirectory(prefix="package-") as scratch:
        work = Path(scratch)
        jar = normalized_jar(JAR, work / JAR.name)
        written = [write_zip(output / FLINK_ZIP, flink_entries(jar))]
        vendor(LOADER_LOCK, work / "loader")
        written.append(write_zip(output / LOADER_ZIP, loader_entries(work / "loader")))
        for zip_name, lock, package, suffixes in ((LAMBDA_ZIP, LAMBDA_LOCK, "fetcher_lambda", (".py",)),
                                                  (ALERTS_ZIP, ALERTS_LOCK, "alerts", (".py", ".json"))):
            vendored = work / package
            vendor(lock, vendored)
            written.append(write_zip(output / zip_name, lambda_entries(vendored, package, suffixes)))
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
