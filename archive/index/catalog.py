"""The LMDB catalog: UID to location, plus intents and the change log.

Databases in one LMDB environment (every write is one durable transaction):

- ``instances``: SOP Instance UID -> JSON record of its versions (tier, key
  prefix, checksum, size, frame count) and which version is current.
- ``hierarchy``: ``study\\0series\\0sop`` -> empty, for listing a study.
- ``intents``: operation id -> objects being written; cleared on commit.
  After a crash each leftover intent is rolled forward or back.
- ``changes``: sequence number -> change; the ordered, gapless log of every
  committed change, read by the metadata index to catch up after a crash.
- ``audit``: audit sequence number -> audit event; append-only (see
  ``archive.audit``). Each event is also a change of type ``audit.recorded``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lmdb

_SEQ_KEY = b"seq"
_AUDIT_SEQ_KEY = b"audit_seq"


def _seq_key(seq: int) -> bytes:
    return struct.pack(">Q", seq)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """Where one stored version of an instance lives."""

    version: str
    tier: str
    prefix: str
    sha256: str
    size: int
    frames: int
    transfer_syntax_uid: str
    sop_class_uid: str
    stored_at: str


@dataclass(slots=True)
class InstanceRecord:
    """Every version of one SOP Instance UID, and the current one."""

    sop_instance_uid: str
    study_uid: str
    series_uid: str
    current: str
    versions: dict[str, VersionRecord]

    @property
    def current_version(self) -> VersionRecord:
        return self.versions[self.current]

    def to_json(self) -> bytes:
        body = {
            "sop_instance_uid": self.sop_instance_uid,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "current": self.current,
            "versions": {k: asdict(v) for k, v in self.versions.items()},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> InstanceRecord:
        body = json.loads(data)
        body["versions"] = {k: VersionRecord(**v) for k, v in body["versions"].items()}
        return cls(**body)


class Catalog:
    """UID lookups and the durable change log, in LMDB.

    Parameters
    ----------
    path
        Folder of the LMDB environment; created when missing.
    map_size
        Largest size the environment may grow to (sparse on disk).
    """

    def __init__(self, path: Path, map_size: int = 1 << 38):
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), max_dbs=32, map_size=map_size, sync=True, metasync=True
        )
        self._instances = self.env.open_db(b"instances")
        self._hierarchy = self.env.open_db(b"hierarchy")
        self._intents = self.env.open_db(b"intents")
        self._changes = self.env.open_db(b"changes")
        self._meta = self.env.open_db(b"meta")
        self._audit = self.env.open_db(b"audit")

    def close(self) -> None:
        self.env.close()

    def get(self, sop_uid: str) -> InstanceRecord | None:
        """The record of a SOP Instance UID, or None."""
        with self.env.begin(db=self._instances) as txn:
            data = txn.get(sop_uid.encode())
        return InstanceRecord.from_json(data) if data is not None else None

    def __len__(self) -> int:
        with self.env.begin(db=self._instances) as txn:
            return int(txn.stat(self._instances)["entries"])

    def iter_records(self) -> Iterator[InstanceRecord]:
        """Every instance record, in UID order."""
        with self.env.begin(db=self._instances) as txn:
            for _key, value in txn.cursor():
                yield InstanceRecord.from_json(value)

    def study_members(self, study_uid: str) -> list[tuple[str, str]]:
        """(series UID, SOP Instance UID) of every instance of a study."""
        prefix = study_uid.encode() + b"\0"
        out = []
        with self.env.begin(db=self._hierarchy) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, _ in cursor:
                    if not key.startswith(prefix):
                        break
                    _study, series, sop = key.decode().split("\0")
                    out.append((series, sop))
        return out

    # -- intents ---------------------------------------------------------

    def begin_intent(self, op_id: str, intent: dict[str, Any]) -> None:
        """Record durably that objects are about to be written."""
        with self.env.begin(write=True, db=self._intents) as txn:
            txn.put(op_id.encode(), json.dumps(intent).encode())

    def end_intent(self, op_id: str) -> None:
        """Forget an intent (after its objects were removed)."""
        with self.env.begin(write=True, db=self._intents) as txn:
            txn.delete(op_id.encode())

    def intents(self) -> dict[str, dict[str, Any]]:
        """Every intent left open, by operation id."""
        with self.env.begin(db=self._intents) as txn:
            return {k.decode(): json.loads(v) for k, v in txn.cursor()}

    # -- commits ---------------------------------------------------------

    def _append_change(self, txn: lmdb.Transaction, change: dict[str, Any]) -> int:
        raw = txn.get(_SEQ_KEY, db=self._meta)
        seq = (int(raw) if raw is not None else 0) + 1
        change = {"seq": seq, **change}
        txn.put(_seq_key(seq), json.dumps(change).encode(), db=self._changes)
        txn.put(_SEQ_KEY, str(seq).encode(), db=self._meta)
        return seq

    def commit_version(
        self,
        sop_uid: str,
        study_uid: str,
        series_uid: str,
        version: VersionRecord,
        op_id: str,
    ) -> int:
        """Make a stored version visible, in one durable transaction.

        The version becomes the current one; older versions stay listed.
        The intent ``op_id`` is cleared and a change appended to the log.

        Returns
        -------
        int
            The change's sequence number.
        """
        with self.env.begin(write=True) as txn:
            raw = txn.get(sop_uid.encode(), db=self._instances)
            if raw is None:
                record = InstanceRecord(
                    sop_uid, study_uid, series_uid, version.version, {}
                )
            else:
                record = InstanceRecord.from_json(raw)
                record.current = version.version
                record.study_uid, record.series_uid = study_uid, series_uid
            record.versions[version.version] = version
            txn.put(sop_uid.encode(), record.to_json(), db=self._instances)
            txn.put(
                f"{study_uid}\0{series_uid}\0{sop_uid}".encode(),
                b"",
                db=self._hierarchy,
            )
            txn.delete(op_id.encode(), db=self._intents)
            return self._append_change(
                txn,
                {
                    "type": "instance.stored",
                    "sop_instance_uid": sop_uid,
                    "study_uid": study_uid,
                    "series_uid": series_uid,
                    "version": version.version,
                    "tier": version.tier,
                    "prefix": version.prefix,
                },
            )

    def last_seq(self) -> int:
        """The sequence number of the newest change (0 when none)."""
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(_SEQ_KEY)
        return int(raw) if raw is not None else 0

    def changes_since(self, seq: int) -> Iterator[dict[str, Any]]:
        """Changes with a sequence number above ``seq``, in order."""
        with self.env.begin(db=self._changes) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_seq_key(seq + 1)):
                for _key, value in cursor:
                    yield json.loads(value)

    def replace_all(self, records: list[InstanceRecord]) -> int:
        """Replace every instance record in one transaction (index rebuild).

        The change log keeps its history; one ``index.rebuilt`` change is
        appended so readers of the log know to reload.
        """
        with self.env.begin(write=True) as txn:
            txn.drop(self._instances, delete=False)
            txn.drop(self._hierarchy, delete=False)
            for record in records:
                txn.put(
                    record.sop_instance_uid.encode(),
                    record.to_json(),
                    db=self._instances,
                )
                key = (
                    f"{record.study_uid}\0{record.series_uid}\0"
                    f"{record.sop_instance_uid}"
                )
                txn.put(key.encode(), b"", db=self._hierarchy)
            return self._append_change(
                txn, {"type": "index.rebuilt", "instances": len(records)}
            )

    # -- audit -----------------------------------------------------------

    def append_audit(self, events: list[dict[str, Any]]) -> int:
        """Append audit events durably, in one transaction; return the last number.

        Each event gets the next audit sequence number (``audit_seq``) and is
        also appended to the change log as an ``audit.recorded`` change, so
        whatever carries the change log elsewhere carries the audit trail too.
        Events are never changed or removed.
        """
        with self.env.begin(write=True) as txn:
            raw = txn.get(_AUDIT_SEQ_KEY, db=self._meta)
            seq = int(raw) if raw is not None else 0
            for event in events:
                seq += 1
                body = {"audit_seq": seq, **event}
                txn.put(_seq_key(seq), json.dumps(body).encode(), db=self._audit)
                self._append_change(txn, {"type": "audit.recorded", "event": body})
            txn.put(_AUDIT_SEQ_KEY, str(seq).encode(), db=self._meta)
        return seq

    def audit_since(self, seq: int) -> Iterator[dict[str, Any]]:
        """Audit events numbered above ``seq``, in order."""
        with self.env.begin(db=self._audit) as txn:
            cursor = txn.cursor()
            if cursor.set_range(_seq_key(seq + 1)):
                for _key, value in cursor:
                    yield json.loads(value)
