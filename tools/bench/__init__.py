"""Side-by-side benchmark of dicomvault against a peer archive (Orthanc).

Terms used in this package:

dataset
    A named set of generated DICOM files (``ct``, ``mr``, ``mr_j2k``,
    ``mixed``) or the real corpus, with the bytes every answer is checked
    against.
peer
    One server under test, started and stopped by the benchmark: dicomvault
    (gRPC and, when present, DICOMweb) or Orthanc (DICOMweb).
figure
    One measured number for one peer (``stow.ct.c4.instances_per_s``); the
    report pairs figures of both peers and states their ratio.

Run it with ``python -m dicomvault.tools.bench`` (``make bench``); the
servers and the client run in a private network namespace whose only
interface is loopback.
"""
