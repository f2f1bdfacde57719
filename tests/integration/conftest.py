"""Fixtures for integration tests: the Airflow metadata database and local log-list sites.

Importing tests.support.airflow sets up the throw-away AIRFLOW_HOME before anything imports
airflow; the helpers to load and run the project's DAGs live there too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.airflow import migrate_airflow_db


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database for this test session."""
    return migrate_airflow_db()


# --------------------------------------------------------------------------- log-list sites


@pytest.fixture
def static_site(tmp_path):
    """A local static web site (a folder served on 127.0.0.1): `(folder, base URL)`."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "site"
    site.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refresh_env(static_site, tmp_path, monkeypatch):
    """CT_LOG_LIST pointing at `log_list.json` of a static site, with a snapshot of its own:
    `(site folder, snapshot path)`."""
    site, base = static_site
    snapshot = tmp_path / "snapshot.json"
    monkeypatch.setenv("CT_LOG_LIST", f"{base}/log_list.json")
    monkeypatch.setenv("CT_LOG_LIST_SNAPSHOT", str(snapshot))
    monkeypatch.setenv("CT_HTTP_RETRIES", "1")
    monkeypatch.setenv("CT_TASK_RETRIES", "0")
    return site, snapshot


@pytest.fixture
def publish_signed_list(refresh_env, tmp_path, monkeypatch):
    """`publish(body)`: put `body` on the refresh site as log_list.json with a valid detached
    signature (log_list.sig) by a fresh RSA key, which CT_LOG_LIST_PUBKEY is set to."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    site, _ = refresh_env
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "list_key.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("CT_LOG_LIST_PUBKEY", str(pem))

    def publish(body: bytes) -> None:
        (site / "log_list.json").write_bytes(body)
        (site / "log_list.sig").write_bytes(key.sign(body, padding.PKCS1v15(), hashes.SHA256()))

    return publish
