"""The CT monitor's FastAPI app, mounted at `/ct` on the Airflow API server by
plugins/ct_monitor.py.

Airflow does not authenticate a plugin's app: this one does, with Airflow's own dependency
`airflow.api_fastapi.core_api.security.get_user` on every route (a JWT from `POST
/auth/token` as `Authorization: Bearer <token>`, or the UI's session cookie; 401 without a
credential or with an expired one, 403 with an invalid one). The one exception:
`/metrics` is open when CT_METRICS_OPEN is true (for a scraper on a trusted network).
CT_METRICS_OPEN is read when the app is made.

Routes: `/metrics` (ctlib.airflow.monitor.metrics) and the page's routes (`/`, `/static/...`,
`/api/...`, ctlib.airflow.monitor.page) when that module is there.

`LazyApp` is what the plugin registers: an ASGI app that makes the real one on its first
request. Every Airflow process loads the plugins (each task process too, for macros), and
only the API server ever serves a request, so importing this module costs nothing more than
ctlib.settings: FastAPI and Airflow's API security are imported by `create_app`. In the API
server (the one process `airflow api-server` gives AIRFLOW_API_APPS) a thread makes the app
and a first snapshot WARM_UP_DELAY seconds after the plugin loads, so that the first scrape
does not pay for them: in the 40-log soak it took 247 ms against 110 ms at most for the others.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ctlib.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

WARM_UP_DELAY = 5.0
"""Seconds after the plugin loads in the API server before the warm-up: past the server's own
start (imports in two threads at once are best avoided)."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; `settings` default to the environment's."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI

    from ctlib.airflow.monitor.metrics import router as metrics_router

    settings = settings or Settings.from_env()
    app = FastAPI(title="CT monitor", docs_url=None, redoc_url=None, openapi_url=None)
    authenticated = [Depends(get_user)]
    app.include_router(metrics_router, dependencies=[] if settings.metrics_open else authenticated)
    try:
        from ctlib.airflow.monitor.page import router as page_router
    except ImportError:  # the page is not there yet: the metrics alone
        pass
    else:
        app.include_router(page_router, dependencies=authenticated)
    return app


class LazyApp:
    """An ASGI app that makes `create_app()` on its first request and passes every request on."""

    def __init__(self, warm_up: bool | None = None) -> None:
        """`warm_up` (default: in the API server only) makes the app and a first snapshot in
        a daemon thread, WARM_UP_DELAY seconds from now."""
        self._app: Any = None
        self._lock = threading.Lock()
        if warm_up if warm_up is not None else bool(os.environ.get("AIRFLOW_API_APPS")):
            threading.Thread(target=self._warm_up, name="ct-monitor-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        time.sleep(WARM_UP_DELAY)
        try:
            self.app  # noqa: B018 (made and kept)
            from ctlib.airflow.monitor.snapshot import log_snapshots, totals

            log_snapshots()
            totals()
        except Exception as err:  # the first request makes it again and says why
            log.info("CT monitor warm-up failed (the first request tries again): %s", err)

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)
