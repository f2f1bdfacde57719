"""A small client of a running Airflow's REST API, signed in as a user with a JWT from
`POST /auth/token`: what the end-to-end tests and the benchmarks that drive `airflow
standalone` share."""

from __future__ import annotations

from typing import Any

import requests

TIMEOUT = 30.0


class AirflowApi:
    """`url` is the API server's root (`http://127.0.0.1:PORT`); `login` is (user, password)."""

    def __init__(self, url: str, login: tuple[str, str]) -> None:
        self.url = url.rstrip("/")
        answer = requests.post(f"{self.url}/auth/token", json={"username": login[0], "password": login[1]},
                               timeout=TIMEOUT)
        answer.raise_for_status()
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        """GET /api/v2/<path> (`params` as the query); {} when it is not there (404), raises on
        any other error status."""
        answer = requests.get(f"{self.url}/api/v2/{path}", params=params, headers=self.headers, timeout=TIMEOUT)
        if answer.status_code == 404:
            return {}
        answer.raise_for_status()
        return answer.json()

    def total(self, path: str, **params: Any) -> int:
        """The `total_entries` of a listing (one item fetched)."""
        return int(self.get(path, limit=1, **params).get("total_entries", 0))

    def fetch(self, path: str) -> Any:
        """GET <url>/<path> outside /api/v2 (a plugin's app, e.g. `ct/api/logs`) as JSON; raises
        on an error status."""
        answer = requests.get(f"{self.url}/{path.lstrip('/')}", headers=self.headers, timeout=TIMEOUT)
        answer.raise_for_status()
        return answer.json()

    def listed(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged listing (the API serves at most 100 a page)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, limit=100, offset=len(items), **params)
            batch = page.get(key, [])
            items += batch
            if not batch or len(items) >= page.get("total_entries", 0):
                return items

    def send(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = TIMEOUT) -> dict[str, Any]:
        """`method` (POST, PUT, PATCH, ...) /api/v2/<path> with a JSON body; on an error status,
        raises AirflowApiError with Airflow's answer."""
        answer = requests.request(method, f"{self.url}/api/v2/{path}", json=body, headers=self.headers,
                                  timeout=timeout)
        if not answer.ok:
            raise AirflowApiError(f"{method} /api/v2/{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else {}

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.send("PATCH", path, body)


class AirflowApiError(RuntimeError):
    """The API answered an error status to a change."""
