"""Marked deletions and legal holds, in the catalog's LMDB environment.

Deletion is two-phase. Marking moves an instance's record from the
``instances`` database to ``deleted`` (and drops it from ``hierarchy``) in
one transaction that appends ``instances.deleted`` to the change log: from
that commit on, no lookup finds it, and the metadata index drops its rows.
Its objects stay in their tiers until the purge, so a restore (the reverse
transaction, logged as ``instances.restored``) brings it back whole.

Holds are keyed ``hold/study/<Study Instance UID>`` or
``hold/patient/<Patient ID>``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dicomvault.archive.index.catalog import Catalog, InstanceRecord


def _hierarchy_key(record: InstanceRecord) -> bytes:
    return (
        f"{record.study_uid}\0{record.series_uid}\0{record.sop_instance_uid}".encode()
    )


class DeletionJournal:
    """Marked instances and legal holds of one catalog."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._deleted = catalog.env.open_db(b"deleted")
        # Holds share the lifecycle database (keys ``hold/...``): LMDB
        # environments have a fixed number of named databases.
        self._holds = catalog.env.open_db(b"lifecycle")

    # -- marks ----------------------------------------------------------------

    def mark(
        self, sop_uids: list[str], reason: str, when: dt.datetime, patient_id: str
    ) -> tuple[int, list[InstanceRecord]]:
        """Hide instances in one durable transaction; return (seq, records).

        The Patient ID is kept with the mark so a patient hold added before
        the purge is still honoured once the metadata rows are gone.
        """
        return self._shift(sop_uids, reason, when, patient_id, to_deleted=True)

    def restore(self, sop_uids: list[str]) -> tuple[int, list[InstanceRecord]]:
        """Bring marked instances back in one durable transaction."""
        return self._shift(sop_uids, "", None, "", to_deleted=False)

    def _shift(
        self,
        sop_uids: list[str],
        reason: str,
        when: dt.datetime | None,
        patient_id: str,
        *,
        to_deleted: bool,
    ) -> tuple[int, list[InstanceRecord]]:
        catalog = self.catalog
        records = []
        with catalog.env.begin(write=True) as txn:
            for sop_uid in sop_uids:
                key = sop_uid.encode()
                if to_deleted:
                    raw = txn.get(key, db=catalog._instances)
                    if raw is None:
                        continue
                    record = InstanceRecord.from_json(raw)
                    entry = {
                        "record": json.loads(raw),
                        "reason": reason,
                        "marked_at": when.isoformat() if when else "",
                        "patient_id": patient_id,
                    }
                    txn.put(key, json.dumps(entry).encode(), db=self._deleted)
                    txn.delete(key, db=catalog._instances)
                    txn.delete(_hierarchy_key(record), db=catalog._hierarchy)
                else:
                    raw = txn.get(key, db=self._deleted)
                    if raw is None or txn.get(key, db=catalog._instances):
                        continue
                    record = InstanceRecord.from_json(
                        json.dumps(json.loads(raw)["record"]).encode()
                    )
                    txn.put(key, record.to_json(), db=catalog._instances)
                    txn.put(_hierarchy_key(record), b"", db=catalog._hierarchy)
                    txn.delete(key, db=self._deleted)
                records.append(record)
            change_type = "instances.deleted" if to_deleted else "instances.restored"
            seq = catalog._append_change(
                txn,
                {
                    "type": change_type,
                    "sop_instance_uids": [r.sop_instance_uid for r in records],
                    "versions": _versions(records),
                },
            )
        return seq, records

    def marked(self) -> dict[str, tuple[InstanceRecord, dt.datetime, str, str]]:
        """Every marked instance: record, when marked, why, and Patient ID."""
        out = {}
        with self.catalog.env.begin(db=self._deleted) as txn:
            for key, raw in txn.cursor():
                entry = json.loads(raw)
                record = InstanceRecord.from_json(json.dumps(entry["record"]).encode())
                when = dt.datetime.fromisoformat(entry["marked_at"])
                out[key.decode()] = (
                    record,
                    when,
                    entry["reason"],
                    entry["patient_id"],
                )
        return out

    def forget(self, record: InstanceRecord) -> int:
        """Drop a purged instance's mark and log the purge as a change.

        Returns
        -------
        int
            The sequence number of the ``instances.purged`` change.
        """
        with self.catalog.env.begin(write=True) as txn:
            txn.delete(record.sop_instance_uid.encode(), db=self._deleted)
            return self.catalog._append_change(
                txn,
                {
                    "type": "instances.purged",
                    "sop_instance_uids": [record.sop_instance_uid],
                    "versions": _versions([record]),
                },
            )

    # -- holds ----------------------------------------------------------------

    def add_hold(self, kind: str, value: str, reason: str, when: dt.datetime) -> None:
        """Put a study or a patient under legal hold."""
        body = {
            "kind": kind,
            "value": value,
            "reason": reason,
            "since": when.isoformat(),
        }
        with self.catalog.env.begin(write=True, db=self._holds) as txn:
            txn.put(f"hold/{kind}/{value}".encode(), json.dumps(body).encode())

    def remove_hold(self, kind: str, value: str) -> bool:
        """Lift a hold; False when there was none."""
        with self.catalog.env.begin(write=True, db=self._holds) as txn:
            return bool(txn.delete(f"hold/{kind}/{value}".encode()))

    def holds(self) -> list[dict[str, Any]]:
        """Every hold in force."""
        out = []
        with self.catalog.env.begin(db=self._holds) as txn:
            cursor = txn.cursor()
            if cursor.set_range(b"hold/"):
                for key, raw in cursor:
                    if not key.startswith(b"hold/"):
                        break
                    out.append(json.loads(raw))
        return out

    def hold_on(self, kind: str, value: str) -> dict[str, Any] | None:
        """The hold on one study or patient, or None."""
        with self.catalog.env.begin(db=self._holds) as txn:
            raw = txn.get(f"hold/{kind}/{value}".encode())
        return json.loads(raw) if raw is not None else None


def _versions(records: list[InstanceRecord]) -> list[dict[str, str]]:
    """Tier and key prefix of every version of ``records``."""
    return [
        {"tier": v.tier, "prefix": v.prefix}
        for record in records
        for v in record.versions.values()
    ]
