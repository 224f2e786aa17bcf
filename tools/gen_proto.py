"""Generate the Python gRPC stubs in ``proto/`` from the ``.proto`` files.

Run as ``python -m dicomvault.tools.gen_proto [OUTPUT_DIR]``. Without an
argument the stubs are written next to the ``.proto`` files; the staleness
test passes a temporary folder and compares.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"
PROTO_FILES = (
    "common.proto",
    "archive.proto",
    "query.proto",
    "deid.proto",
    "replication.proto",
    "lifecycle.proto",
    "analytics.proto",
    "admin.proto",
)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over the ``.proto`` files and write the stubs to ``out_dir``.

    Returns
    -------
    list of Path
        The generated files.

    Raises
    ------
    RuntimeError
        If protoc reports an error.
    """
    from grpc_tools import protoc  # test/dev dependency only

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Map the folder to the import path ``dicomvault/proto`` so that the
        # generated modules import each other as ``dicomvault.proto.*``.
        args = [
            "protoc",
            f"-Idicomvault/proto={PROTO_DIR}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(f"dicomvault/proto/{name}" for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        written = []
        for path in sorted((Path(tmp) / "dicomvault" / "proto").iterdir()):
            if path.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / path.name
                shutil.copyfile(path, target)
                written.append(target)
    return written


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR
    for path in generate(out):
        print(path.name)


if __name__ == "__main__":
    main()
