"""Lookalike as a shop installs it: the wheel, built from the source tree, installed into a fresh virtualenv
and run inside the django-oscar 4.2 store of ``tests/oscar_shop`` (copied out of the tree, so that nothing
is imported from it). The store uses this run's PostgreSQL and Valkey, with a test database of its own.

The fresh virtualenv reaches the other packages (Django, Oscar, torch, ...) through a ``.pth`` file naming
this interpreter's site-packages: installing torch again would take minutes and prove nothing about
Lookalike.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lookalike", "recommendations", "scraper", "campaigns")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built (no network, no build isolation) from a copy of the package sources."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work, source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = work.glob("lookalike-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_the_apps_templates_static_files_and_migrations(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for expected in (
        "lookalike/catalog.py",
        "lookalike/oscar.py",
        "lookalike/oscar_writer.py",
        "recommendations/templates/recommendations/similar_products.html",
        "recommendations/migrations/0001_initial.py",
        "scraper/migrations/0001_initial.py",
        "campaigns/migrations/0002_marketing_group.py",
        "campaigns/templates/campaigns/landing_page.html",
        "scraper/templates/admin/scraper/importjob/change_form.html",
    ):
        assert expected in names, expected
    assert any(name.startswith("scraper/static/scraper/") for name in names)
    # The demo catalog, the project's settings, tests and benchmarks stay out of a shop's site-packages.
    assert not [name for name in names if name.split("/")[0] in ("shop", "config", "tests", "bench")]
    assert not [name for name in names if "__pycache__" in name]
    requirements = {
        re.split(r"[<>=!~; ]", line.split(" ", 1)[1])[0]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert {"Django", "djangorestframework", "pgvector", "torch", "celery[redis]"} <= requirements


def _fresh_virtualenv(path: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", path], check=True, timeout=120)
    python = path / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "lookalike-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


def _package_files(site: Path) -> set[Path]:
    return {path for name in PACKAGES for path in (site / name).rglob("*") if path.is_file()}


@pytest.mark.slow
def test_lookalike_from_the_wheel_works_inside_a_django_oscar_store(wheel: Path, tmp_path: Path) -> None:
    site = _fresh_virtualenv(tmp_path / "venv", wheel)
    host = tmp_path / "host"
    shutil.copytree(
        ROOT / "tests" / "oscar_shop", host / "oscar_shop", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "tests" / "scraper" / "fixture_store.py", host / "oscar_shop" / "fixture_store.py")
    installed = _package_files(site)
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("LOOKALIKE_TEST_RUN_ID", "LOOKALIKE_TEST_DB", "CACHE_KEY_PREFIX", "DJANGO_SETTINGS_MODULE")
        and key != "PYTHONPATH"
    }
    env.update(
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
        # Not skipped without the photos: the inner run fails and says where it looked.
        LOOKALIKE_DATA_DIR=str(DATA_DIR),
        LOOKALIKE_SCRAPER_ALLOW_HOSTS="127.0.0.1",  # the Shopify fixture store on the loopback
        PYTHONDONTWRITEBYTECODE="1",
        HOME=str(tmp_path),  # whatever a cache would write lands here, not in the package
    )
    python = tmp_path / "venv" / "bin" / "python"

    def run(*args: str | Path, timeout: int = 900) -> str:
        result = subprocess.run(
            [python, *args], cwd=host, env=env, capture_output=True, text=True, timeout=timeout
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        return output

    where = run(
        "-c", "import lookalike, recommendations; print(lookalike.__file__, recommendations.__file__)"
    )
    assert where.count(str(site)) == 2, where  # the installed wheel, not the source tree
    # The plugin's migrations are complete for a host whose DEFAULT_AUTO_FIELD is Oscar's AutoField.
    migrations = run(
        "-m",
        "django",
        "makemigrations",
        "recommendations",
        "scraper",
        "campaigns",
        "--check",
        "--dry-run",
        "--settings=oscar_shop.settings",
        timeout=300,
    )
    assert "No changes detected" in migrations, migrations

    output = run(
        "-m",
        "pytest",
        "oscar_shop/oscar_checks.py",
        "--ds=oscar_shop.settings",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
        "-W",
        "ignore::DeprecationWarning",
    )
    assert "7 passed" in output, output
    assert _package_files(site) == installed  # nothing written inside the installed package
