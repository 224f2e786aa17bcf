"""Sample input for ``make run``: the DICOM test files bundled with pydicom."""

from __future__ import annotations

from pathlib import Path


def pydicom_test_files() -> list[Path]:
    """The ``.dcm`` files shipped inside the installed pydicom package.

    Only files present on disk are listed; nothing is downloaded.
    """
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return sorted(p for p in folder.rglob("*.dcm") if p.is_file())
