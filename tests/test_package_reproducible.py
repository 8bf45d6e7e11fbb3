"""``make package`` is reproducible: two fresh copies of the checkout give byte-identical zips.

The two copies differ in everything a fresh clone may differ in and the zips must not show: their
paths, their files' times and modes, the umask of the build, and the connector jar, which Maven
stamps with the build's time (the second copy's has other times, another entry order and no
compression). Each builds with ``python -m infra.package`` as ``make package`` does.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import package

pytestmark = pytest.mark.packaging

ZIPS = (package.FLINK_ZIP, package.LAMBDA_ZIP, package.ALERTS_ZIP, package.LOADER_ZIP)


def tracked_files() -> list[str]:
    """What a clone of this work tree's next commit holds: tracked files and those git would add."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=package.ROOT, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name]


def checkout_copy(target: Path, mtime: float, mode: int) -> Path:
    """The tracked files of this checkout (as they are in the work tree) under ``target``."""
    for name in tracked_files():
        source, copy = package.ROOT / name, target / name
        if not source.is_file():
            continue  # deleted in the work tree
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
        copy.chmod(mode)
        os.utime(copy, (mtime, mtime))
    return target


def rebuilt_jar(source: Path, target: Path) -> None:
    """The same classes as another build would write them: other times, reversed order, stored."""
    target.parent.mkdir(parents=True)
    with zipfile.ZipFile(source) as jar, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in reversed(jar.infolist()):
            copy = zipfile.ZipInfo(info.filename, date_time=(2031, 7, 4, 12, 30, 0))
            copy.external_attr = info.external_attr | (0o664 << 16)
            if info.filename.endswith("/pom.properties"):  # Maven dates it, as a comment line
                lines = jar.read(info).splitlines(keepends=True)
                out.writestr(copy, b"".join(b"#Fri Jul 04 12:30:00 UTC 2031\n"
                                            if line.startswith(b"#") and b"Maven" not in line else line
                                            for line in lines))
                continue
            with jar.open(info) as src, out.open(copy, "w") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)


def build(checkout: Path, umask: int) -> dict[str, str]:
    """``python -m infra.package`` in ``checkout``; the sha256 of each zip it wrote."""
    output = checkout / "dist"
    result = subprocess.run([sys.executable, "-m", "infra.package", str(output)], cwd=checkout,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                            capture_output=True, text=True, timeout=600, preexec_fn=lambda: os.umask(umask))
    assert result.returncode == 0, result.stderr[-3000:]
    return {name: hashlib.sha256((output / name).read_bytes()).hexdigest() for name in ZIPS}


def locked_distributions(lock: Path) -> set[str]:
    return {re.sub(r"[-_.]+", "_", line.split("==")[0]).lower()
            for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line)}


def test_two_fresh_checkouts_package_byte_identical_zips(tmp_path):
    if not package.JAR.exists():
        pytest.skip("the connector jar is missing: run `make jar`")
    first = checkout_copy(tmp_path / "one" / "clone", mtime=1_700_000_000, mode=0o644)
    second = checkout_copy(tmp_path / "two" / "elsewhere" / "clone", mtime=1_900_000_000, mode=0o664)
    (first / package.JAR.relative_to(package.ROOT)).parent.mkdir(parents=True)
    (first / package.JAR.relative_to(package.ROOT)).write_bytes(package.JAR.read_bytes())
    rebuilt_jar(package.JAR, second / package.JAR.relative_to(package.ROOT))

    sums = build(first, umask=0o022), build(second, umask=0o077)
    assert sums[0] == sums[1]

    # What made them equal: every entry's header is fixed, nothing compiled is shipped, and the
    # Lambda's libraries are exactly its lock's.
    dist = first / "dist"
    for name in ZIPS:
        with zipfile.ZipFile(dist / name) as archive:
            entries = archive.infolist()
        assert [e.filename for e in entries] == sorted(e.filename for e in entries)
        assert {e.date_time for e in entries} == {package.FIXED_TIME}
        assert not [e.filename for e in entries if e.filename.endswith(".pyc") or "__pycache__" in e.filename]
    with zipfile.ZipFile(dist / package.LAMBDA_ZIP) as archive:
        shipped = {re.sub(r"-[^-]+\.dist-info$", "", part).lower()
                   for part in {n.split("/")[0] for n in archive.namelist()} if part.endswith(".dist-info")}
    assert shipped == locked_distributions(package.LAMBDA_LOCK)
    # A console script's RECORD line would hash a file whose first line names the installing
    # interpreter (another path in another clone); the scripts are not shipped, nor their lines.
    for name in (package.LAMBDA_ZIP, package.LOADER_ZIP):
        with zipfile.ZipFile(dist / name) as archive:
            records = [archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        assert records and not [line for r in records for line in r.splitlines() if line.startswith(("../", "bin/"))]
    with zipfile.ZipFile(dist / package.FLINK_ZIP) as app, app.open("lib/pyflink-dependencies.jar") as jar_file:
        with zipfile.ZipFile(jar_file) as jar, zipfile.ZipFile(package.JAR) as built:
            assert jar.namelist()[:2] == ["META-INF/", "META-INF/MANIFEST.MF"]
            assert sorted(jar.namelist()) == sorted(built.namelist())
