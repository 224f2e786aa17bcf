"""Write a de-identified copy of one stored study to a tier.

Each instance is read bit-exact from the archive, de-identified with
:func:`~dicomvault.archive.deid.deidentify` and written to the target tier as
``deid/<study>/<series>/<sop>.dcm`` under its pseudonymous UIDs. The source
study is only read, never changed.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pydicom

from dicomvault.archive import logkeys as lk
from dicomvault.archive.deid import DeidOptions, DeidReport, deidentify
from dicomvault.archive.errors import NotFoundError
from dicomvault.archive.uids import check_uid
from dicomvault.tiers import Tier, make_key

if TYPE_CHECKING:
    from dicomvault.archive.service import Archive

logger = logging.getLogger(__name__)


@dataclass
class DeidStudyReport:
    """The outcome of one study's de-identified copy."""

    study_uid: str
    new_study_uid: str = ""
    written: list[str] = field(default_factory=list)
    burned_in: dict[str, str] = field(default_factory=dict)


def export_deidentified_study(
    archive: Archive, study_uid: str, target: Tier, options: DeidOptions
) -> DeidStudyReport:
    """Write a de-identified copy of ``study_uid`` to ``target``.

    Writes new objects to ``target``; the archive's own data is unchanged.
    Instances that may carry burned-in text are written and listed in
    ``burned_in`` with the reason, so the caller can review or drop them.

    Raises
    ------
    NotFoundError
        No instance of the study is stored.
    """
    check_uid(study_uid, "StudyInstanceUID")
    rows = [
        row[0]
        for batch in archive.sql(
            "SELECT sop_instance_uid FROM instances "
            f"WHERE study_uid = '{study_uid}' ORDER BY sop_instance_uid"
        )
        for row in batch.rows
    ]
    if not rows:
        raise NotFoundError(f"no stored instance has Study Instance UID {study_uid}")

    report = DeidStudyReport(study_uid)
    for sop_uid in rows:
        _record, stream = archive.retrieve(sop_uid)
        ds = pydicom.dcmread(io.BytesIO(b"".join(stream)), force=True)
        result: DeidReport = deidentify(ds, options)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=False)
        data = out.getvalue()
        key = make_key(
            "deid",
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            f"{ds.SOPInstanceUID}.dcm",
        )
        target.put_bytes(key, data, sha256=hashlib.sha256(data).hexdigest())

        report.new_study_uid = str(ds.StudyInstanceUID)
        report.written.append(str(key))
        if result.burned_in:
            report.burned_in[result.sop_instance_uid] = result.burned_in
        lk.log_event(
            logger,
            lk.DEID_WRITTEN,
            **{
                lk.SOURCE_SOP_INSTANCE_UID: sop_uid,
                lk.SOP_INSTANCE_UID: result.sop_instance_uid,
                lk.TIER: target.name,
                lk.KEY: key,
                lk.BYTES: len(data),
                lk.BURNED_IN: "yes" if result.burned_in else "no",
            },
        )
    return report
