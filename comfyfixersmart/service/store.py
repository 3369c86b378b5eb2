"""Jobs of the panel kept in the StateManager's job queue, so they outlive a restart.

Mapping: a job row per job (``kind`` download/fix; the panel's own fields in ``payload``
under ``"panel"``), an item row per file (``status``, ``downloaded``, ``total``, the error
message; the rest of the item in ``data``).  The queue's job status follows the panel job:
queued/resolving/running are stored as ``running`` (which makes this process the owner, so
a restart finds the job through ``interrupted_jobs``), finished states as themselves.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ..settings import Config

_MARK = "panel"
_ITEM_COLUMNS = ("state", "downloaded", "total")


def _db_status(state: str) -> str:
    return state if state in ("done", "failed", "cancelled") else "running"


class StateJobStore:
    """A ``JobStore`` on ``comfyfixersmart.state.StateManager``."""

    def __init__(self, state: Any):
        self.state = state

    @classmethod
    def from_config(cls, config: Config) -> "StateJobStore":
        from ..state import StateManager

        return cls(StateManager(config))

    def create(self, kind: str, record: Dict[str, Any]) -> str:
        job_id = self.state.enqueue_job(kind, payload={_MARK: _job_fields(record)})
        record = {**record, "id": job_id}
        self.save(record)
        return job_id

    def save(self, record: Dict[str, Any], item_ids: Optional[Sequence[str]] = None) -> None:
        job_id = record["id"]
        error = record.get("error")
        self.state.update_job(job_id, status=_db_status(record["state"]), payload={_MARK: _job_fields(record)},
                              error=error.get("message") if isinstance(error, dict) else None)
        wanted = None if item_ids is None else set(item_ids)
        for item in record.get("items") or []:
            if wanted is None or item["id"] in wanted:
                self.save_item(job_id, item)

    def save_item(self, job_id: str, item: Dict[str, Any]) -> None:
        """Store one item's change; the job row is left as it is (one small transaction)."""
        item_error = item.get("error")
        # the error dict travels in data ("error" is the queue's message column)
        data = {k: v for k, v in item.items() if k not in _ITEM_COLUMNS and k not in ("id", "error")}
        data["error_info"] = item_error
        self.state.update_item(job_id, item["id"], status=item["state"],
                               downloaded=int(item.get("downloaded") or 0), total=item.get("total"),
                               error=item_error.get("message") if isinstance(item_error, dict) else None, **data)

    def load(self, limit: int) -> List[Dict[str, Any]]:
        interrupted = {job.id for job in self.state.interrupted_jobs()}
        records: List[Dict[str, Any]] = []
        for job in self.state.list_jobs(limit=limit):
            fields = (job.payload or {}).get(_MARK)
            if not isinstance(fields, dict):
                continue  # a job of the CLI or another tool
            items = []
            for row in job.items:
                item = dict(row.data or {})
                item["error"] = item.pop("error_info", None)
                item.update(id=row.item_id, state=row.status, downloaded=row.downloaded, total=row.total)
                items.append(item)
            record = {**fields, "id": job.id, "kind": job.kind, "created": job.created, "updated": job.updated,
                      "items": items}
            if job.id in interrupted or job.status == "interrupted":
                record["interrupted"] = True
            records.append(record)
        return records

    def close(self) -> None:
        close = getattr(self.state, "close", None)
        if callable(close):
            close()


def _job_fields(record: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("items", "id", "kind")}
