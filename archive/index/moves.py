"""The move journal: durable intents of study moves between tiers, in LMDB.

A move intent is written before the first object reaches the target tier and
names every instance version being moved and the tier it comes from. Its
``phase`` says which copy is authoritative after a crash:

- ``copying``: the catalog still points at the source; objects in the target
  are leftovers to remove.
- ``switched``: the catalog points at the target (set in the same LMDB
  transaction that switched the catalog and logged ``study.moved``); objects
  in the source are leftovers to remove.

The journal lives in its own database of the catalog's LMDB environment, so
the switch is one transaction with the instance records and the change log.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from dicomvault.archive.index.catalog import Catalog, InstanceRecord

PHASE_COPYING = "copying"
PHASE_SWITCHED = "switched"


class MoveJournal:
    """Open study moves of one catalog, by operation id."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._db = catalog.env.open_db(b"moves")

    def begin(self, op_id: str, intent: dict[str, Any]) -> None:
        """Record durably that a study is about to be copied to a tier."""
        body = {**intent, "phase": PHASE_COPYING}
        with self.catalog.env.begin(write=True, db=self._db) as txn:
            txn.put(op_id.encode(), json.dumps(body).encode())

    def open_moves(self) -> dict[str, dict[str, Any]]:
        """Every move left open, by operation id."""
        with self.catalog.env.begin(db=self._db) as txn:
            return {k.decode(): json.loads(v) for k, v in txn.cursor()}

    def end(self, op_id: str) -> None:
        """Forget a move whose leftovers are gone."""
        with self.catalog.env.begin(write=True, db=self._db) as txn:
            txn.delete(op_id.encode())

    def switch(
        self, op_id: str, target: str, change: dict[str, Any]
    ) -> tuple[int, list[InstanceRecord]]:
        """Point every moved version at ``target``, in one durable transaction.

        The same transaction marks the intent ``switched`` and appends
        ``change`` (type ``study.moved``) to the catalog's change log.

        Returns
        -------
        tuple
            The change's sequence number and the updated instance records.
        """
        records: list[InstanceRecord] = []
        instances = self.catalog._instances
        with self.catalog.env.begin(write=True) as txn:
            raw_intent = txn.get(op_id.encode(), db=self._db)
            if raw_intent is None:
                raise KeyError(f"no open move {op_id}")
            intent = json.loads(raw_intent)
            for sop_uid, versions in intent["versions"].items():
                raw = txn.get(sop_uid.encode(), db=instances)
                if raw is None:
                    continue
                record = InstanceRecord.from_json(raw)
                for version_id in versions:
                    if version_id in record.versions:
                        record.versions[version_id] = dataclasses.replace(
                            record.versions[version_id], tier=target
                        )
                txn.put(sop_uid.encode(), record.to_json(), db=instances)
                records.append(record)
            intent["phase"] = PHASE_SWITCHED
            txn.put(op_id.encode(), json.dumps(intent).encode(), db=self._db)
            seq = self.catalog._append_change(txn, change)
        return seq, records
