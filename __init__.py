"""dicomvault: a vendor-neutral archive core for DICOM.

The package is laid out by ownership, and imports point one way:
``tools`` -> ``archive.api`` -> ``archive`` -> ``tiers``, ``codecs``.

- ``proto``: the gRPC wire contract and its generated stubs.
- ``archive``: the service (ingest, retrieve, index, verify).
- ``tiers``: where bytes live, one module per storage backend.
- ``codecs``: frame codecs and checksums, bytes in and bytes out.
- ``tools``: the command line and operational scripts.
"""

__version__ = "0.1.0"
