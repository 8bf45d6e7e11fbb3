"""The local mini-cluster's REST API, for what a test cannot see from the outputs: restarts and
checkpoints."""

from __future__ import annotations

import socket

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FlinkRest:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def _get(self, path: str) -> dict:
        response = requests.get(f"{self.base}{path}", timeout=5)
        response.raise_for_status()
        return response.json()

    def running_job(self) -> str | None:
        try:
            jobs = self._get("/jobs/overview")["jobs"]
        except requests.RequestException:
            return None
        running = [j["jid"] for j in jobs if j["state"] == "RUNNING"]
        return running[0] if running else None

    def failures(self, job_id: str) -> list[str]:
        """Every exception the job has recorded: each one caused a restart."""
        history = self._get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return [entry.get("exceptionName", "") for entry in history]

    def failure_traces(self, job_id: str) -> list[str]:
        """The stack trace of every exception the job has recorded (root causes included)."""
        history = self._get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return [entry.get("stacktrace", "") for entry in history]

    def completed_checkpoints(self, job_id: str) -> tuple[int, str | None]:
        """(number completed, external path of the latest)."""
        stats = self._get(f"/jobs/{job_id}/checkpoints")
        latest = (stats.get("latest") or {}).get("completed") or {}
        return stats["counts"]["completed"], latest.get("external_path")

    def restored_from(self, job_id: str) -> str | None:
        """The external path of the checkpoint or savepoint the job started from, if any."""
        stats = self._get(f"/jobs/{job_id}/checkpoints")
        return ((stats.get("latest") or {}).get("restored") or {}).get("external_path")
