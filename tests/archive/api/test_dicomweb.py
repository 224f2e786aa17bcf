"""DICOMweb against a live server: the real corpus stored through STOW-RS,
found through QIDO-RS and read back through WADO-RS, with dicomweb-client and
plain HTTP."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from openjpeg import decode as j2k_decode
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from tests.archive.test_corpus import _reference_frames, _sop_uid
from tests.server import ServerProcess

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary={}'
BOUNDARY = "dicomvault-test-boundary"
LOSSLESS_SOURCES = (
    "Implicit VR Little Endian",
    "Explicit VR Little Endian",
    "Explicit VR Big Endian",
    "RLE Lossless",
    "JPEG Lossless",
    "JPEG 2000 Image Compression (Lossless Only)",
    "JPEG-LS Lossless",
)


def _stow_body(paths: list[Path]) -> Iterator[bytes]:
    """A multipart body streamed from files (sent chunked, no Content-Length)."""
    for path in paths:
        yield f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 16):
                yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def _stow(url: str, paths: list[Path]) -> requests.Response:
    return requests.post(
        url,
        data=_stow_body(paths),
        headers={"Content-Type": STOW_TYPE.format(BOUNDARY)},
        timeout=300,
    )


def _split_multipart(response: requests.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part, parsed independently of the server."""
    ctype = response.headers["content-type"]
    boundary = ctype.split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    parts = []
    for chunk in body.split(b"\r\n--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _sep, data = chunk[2:].partition(b"\r\n\r\n")
        parts.append((head.decode().split(":", 1)[1].strip(), data))
    return parts


def corpus_file(web: dict[str, Any], name: str) -> Path:
    return next(p for p in web["files"] if p.name == name)


def _study_series(url: str) -> tuple[str, str]:
    parts = url.split("/")
    return parts[parts.index("studies") + 1], parts[parts.index("series") + 1]


def _instance_path(path: Path) -> str:
    """The WADO-RS path of a corpus file's instance, under the base URL."""
    study, series, sop = _uids(path)
    return f"/studies/{study}/series/{series}/instances/{sop}"


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def web(
    tmp_path_factory: pytest.TempPathFactory, corpus: Path
) -> Iterator[dict[str, Any]]:
    """A live server with the whole corpus stored through STOW-RS."""
    files = sorted(corpus.rglob("*.dcm"))
    with ServerProcess(tmp_path_factory.mktemp("web") / "data") as server:
        replies = []
        for start in range(0, len(files), 40):
            reply = _stow(server.http_url + "/studies", files[start : start + 40])
            replies.append(reply)
        by_sop: dict[str, Path] = {}
        for path in files:
            try:
                by_sop.setdefault(_sop_uid(path), path)
            except AttributeError:
                continue  # no SOP Instance UID anywhere: refused by STOW-RS
        stored: dict[str, Path] = {}
        urls: dict[str, str] = {}
        for reply in replies:
            for item in reply.json().get("00081199", {}).get("Value", []):
                sop = item["00081155"]["Value"][0]
                stored[sop] = by_sop[sop]
                urls[sop] = item["00081190"]["Value"][0]
        yield {
            "server": server,
            "url": server.http_url,
            "client": DICOMwebClient(server.http_url),
            "replies": replies,
            "files": files,
            "stored": stored,
            "urls": urls,
            "manifest": {
                r["file"]: r for r in csv.DictReader(open(corpus / "MANIFEST.csv"))
            },
        }


class TestStow:
    def test_corpus_is_stored_with_retrieve_urls(self, web: dict[str, Any]) -> None:
        """Every instance file is stored; each reply item names its retrieve URL."""
        assert len(web["stored"]) >= 110
        for reply in web["replies"]:
            assert reply.status_code in (200, 202)
            assert reply.headers["content-type"] == "application/dicom+json"
            for item in reply.json()["00081199"]["Value"]:
                sop = item["00081155"]["Value"][0]
                url = item["00081190"]["Value"][0]
                assert url.startswith(f"{web['url']}/studies/")
                assert url.endswith(f"/instances/{sop}")

    def test_files_that_are_not_instances_fail_with_reason_c000(
        self, web: dict[str, Any]
    ) -> None:
        """A batch with non-instances is 202; each gets failure reason 0xC000."""
        reasons = [
            item["00081197"]["Value"][0]
            for reply in web["replies"]
            for item in reply.json().get("00081198", {}).get("Value", [])
        ]
        assert reasons.count(0xC000) == 3
        assert set(reasons) <= {0xC000, 0x0111}
        assert any(r.status_code == 202 for r in web["replies"])

    def test_dicomweb_client_stores_a_dataset(self, web: dict[str, Any]) -> None:
        """dicomweb-client's store_instances stores a new instance."""
        ds = pydicom.dcmread(web["files"][0])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        reply = web["client"].store_instances([ds])
        (item,) = reply.ReferencedSOPSequence
        assert item.ReferencedSOPInstanceUID == ds.SOPInstanceUID

    def test_part_of_another_study_fails_with_409_and_reason_a900(
        self, web: dict[str, Any]
    ) -> None:
        """POST /studies/{study} refuses an instance of another study."""
        reply = _stow(web["url"] + "/studies/1.2.3.4", [web["files"][0]])
        assert reply.status_code == 409
        (failed,) = reply.json()["00081198"]["Value"]
        assert failed["00081197"]["Value"] == [0xA900]
        assert reply.json()["00081190"]["Value"] == [f"{web['url']}/studies/1.2.3.4"]

    def test_wrong_content_type_is_415(self, web: dict[str, Any]) -> None:
        """A body that is not multipart/related DICOM is refused with 415."""
        reply = requests.post(
            web["url"] + "/studies",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert reply.status_code == 415
        assert reply.text == (
            'STOW-RS accepts multipart/related; type="application/dicom", '
            "not application/json\n"
        )


class TestWado:
    def test_every_stored_instance_retrieves_bit_exact(
        self, web: dict[str, Any]
    ) -> None:
        """Instances come back byte for byte with transfer-syntax=*."""
        for sop, path in web["stored"].items():
            reply = requests.get(
                web["urls"][sop],
                headers={
                    "Accept": 'multipart/related; type="application/dicom"; '
                    "transfer-syntax=*"
                },
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            ((ctype, data),) = _split_multipart(reply)
            assert ctype.startswith("application/dicom; transfer-syntax=")
            expected = hashlib.sha256(path.read_bytes()).hexdigest()
            assert hashlib.sha256(data).hexdigest() == expected, path.name

    def test_series_retrieval_by_client_returns_every_instance(
        self, web: dict[str, Any]
    ) -> None:
        """dicomweb-client's retrieve_series gets each instance of the series."""
        rle = corpus_file(web, "xa_multiframe_96frames_jpeg_bot.dcm")
        study, series = _study_series(web["urls"][_uids(rle)[2]])
        members = {s for s, u in web["urls"].items() if _study_series(u)[1] == series}
        got = web["client"].retrieve_series(study, series)
        assert {str(ds.SOPInstanceUID) for ds in got} == members

    def test_frames_in_explicit_vr_little_endian_equal_pydicom_pixels(
        self, web: dict[str, Any]
    ) -> None:
        """Every frame of every decodable file equals pydicom's decoded pixels."""
        compared = 0
        for sop, path in web["stored"].items():
            reference = _reference_frames(path)
            if reference is None:
                continue
            study, series = _study_series(web["urls"][sop])
            numbers = list(range(1, len(reference) + 1))
            got = web["client"].retrieve_instance_frames(
                study,
                series,
                sop,
                numbers,
                media_types=(("application/octet-stream", ExplicitVRLittleEndian),),
            )
            assert len(got) == len(reference), path.name
            for number, data in zip(numbers, got, strict=True):
                expected = reference[number - 1]
                dtype = expected.dtype.newbyteorder("<")
                arr = np.frombuffer(data, dtype=dtype).reshape(expected.shape)
                assert np.array_equal(arr, expected), f"{path.name} frame {number}"
            compared += 1
        decodable = [
            f for f, r in web["manifest"].items() if r["pydicom_decodes"] == "yes"
        ]
        assert compared >= len(decodable) - 8

    def test_jpeg2000_frames_decode_to_identical_pixels_for_lossless_sources(
        self, web: dict[str, Any]
    ) -> None:
        """Frames transcoded to JPEG 2000 lossless decode to the stored pixels."""
        compared = 0
        for sop, path in web["stored"].items():
            row = web["manifest"].get(path.name, {})
            if not row.get("transfer_syntax_name", "").startswith(LOSSLESS_SOURCES):
                continue
            reference = _reference_frames(path)
            # OpenJPEG encodes integers of up to 16 bits, at least 32x32
            # pixels (six wavelet resolutions); see README, Limitations.
            if reference is None or reference.dtype.kind == "f":
                continue
            if reference.dtype.itemsize > 2 or min(reference.shape[1:3]) < 32:
                continue
            reply = requests.get(
                web["urls"][sop] + "/frames/1",
                headers={"Accept": 'multipart/related; type="image/jp2"'},
                timeout=60,
            )
            assert reply.status_code == 200, f"{path.name}: {reply.text}"
            ((ctype, data),) = _split_multipart(reply)
            assert ctype == f"image/jp2; transfer-syntax={JPEG2000Lossless}"
            decoded = j2k_decode(data)
            assert np.array_equal(decoded.reshape(reference[0].shape), reference[0]), (
                path.name
            )
            compared += 1
        assert compared >= 35

    def test_instance_transcoded_to_jpeg2000_has_the_same_pixels(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """A whole instance asked for as JPEG 2000 lossless decodes to its pixels."""
        path = corpus / "mr_brain_siemens_trio_rle.dcm"
        study, series, sop = _uids(path)
        ds = web["client"].retrieve_instance(
            study, series, sop, media_types=(("application/dicom", JPEG2000Lossless),)
        )
        as_stored = web["client"].retrieve_instance(study, series, sop)
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert as_stored.file_meta.TransferSyntaxUID != JPEG2000Lossless
        assert np.array_equal(ds.pixel_array, as_stored.pixel_array)
        assert ds.SOPInstanceUID == sop

    def test_metadata_names_bulk_data_that_can_be_fetched(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """Metadata carries an absolute BulkDataURI; fetching it gives the value."""
        path = corpus / "mr_brain_siemens_trio_implicit_le.dcm"
        study, series, sop = _uids(path)
        # Plain HTTP here: dicomweb-client sends a Host header without the
        # port, and the server builds absolute URIs from the Host it is sent.
        url = f"{web['url']}/studies/{study}/series/{series}/instances/{sop}"
        (meta,) = requests.get(url + "/metadata", timeout=60).json()
        uri = meta["7FE00010"]["BulkDataURI"]
        assert uri == url + "/bulkdata/7FE00010"
        (data,) = web["client"].retrieve_bulkdata(uri)
        assert data == pydicom.dcmread(path).PixelData
        study_meta = web["client"].retrieve_study_metadata(study)
        assert sop in {m["00080018"]["Value"][0] for m in study_meta}

    def test_rendered_png_uses_the_requested_window(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """A frame renders as PNG of the image size; another window changes it."""
        path = corpus / "mr_brain_siemens_trio_implicit_le.dcm"
        study, series, sop = _uids(path)
        url = f"{web['url']}/studies/{study}/series/{series}/instances/{sop}"
        pictures = []
        for query in ("", "?window=200,400", "?window=600,100"):
            reply = requests.get(
                url + "/frames/1/rendered" + query,
                headers={"Accept": "image/png"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-type"] == "image/png"
            picture = np.asarray(Image.open(io.BytesIO(reply.content)))
            assert picture.shape == (384, 384)
            pictures.append(picture)
        assert not np.array_equal(pictures[1], pictures[2])
        jpeg = requests.get(url + "/rendered", timeout=60)
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert jpeg.content[:2] == b"\xff\xd8"


class TestQido:
    def _expected(
        self, web: dict[str, Any], keep: Any, key: str = "StudyInstanceUID"
    ) -> set[str]:
        out = set()
        for path in web["stored"].values():
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            if keep(ds):
                # The archive files instances without the UID under "_".
                out.add(str(ds.get(key) or "_"))
        return out

    def test_query_table_matches_the_stored_corpus(self, web: dict[str, Any]) -> None:
        """Each query at each level and nesting finds exactly the matching UIDs."""
        first = pydicom.dcmread(
            web["stored"][_uids(corpus_file(web, "mr_brain_siemens_trio_rle.dcm"))[2]],
            force=True,
        )
        study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        mr = self._expected(
            web, lambda d: d.get("Modality") == "MR", "SeriesInstanceUID"
        )
        table: list[tuple[str, dict[str, str], str, set[str]]] = [
            ("/series", {"Modality": "MR"}, "0020000E", mr),
            ("/series", {"00080060": "MR"}, "0020000E", mr),
            (
                "/studies",
                {"PatientID": str(first.PatientID)},
                "0020000D",
                self._expected(web, lambda d: d.get("PatientID") == first.PatientID),
            ),
            (
                "/studies",
                {"StudyDate": "19000101-20041231"},
                "0020000D",
                self._expected(
                    web,
                    lambda d: (
                        "19000101" <= str(d.get("StudyDate", "")) <= "20041231"
                        and bool(d.get("StudyDate"))
                    ),
                ),
            ),
            (
                f"/studies/{study}/series",
                {},
                "0020000E",
                self._expected(
                    web,
                    lambda d: d.get("StudyInstanceUID") == study,
                    "SeriesInstanceUID",
                ),
            ),
            (
                f"/studies/{study}/instances",
                {},
                "00080018",
                self._expected(
                    web, lambda d: d.get("StudyInstanceUID") == study, "SOPInstanceUID"
                ),
            ),
            (
                f"/studies/{study}/series/{series}/instances",
                {},
                "00080018",
                self._expected(
                    web,
                    lambda d: d.get("SeriesInstanceUID") == series,
                    "SOPInstanceUID",
                ),
            ),
            (
                "/instances",
                {"SOPInstanceUID": str(first.SOPInstanceUID)},
                "00080018",
                {str(first.SOPInstanceUID)},
            ),
            ("/studies", {"StudyInstanceUID": "1.2.3.999"}, "0020000D", set()),
        ]
        for path, params, tag, expected in table:
            reply = requests.get(
                web["url"] + path, params={**params, "limit": "1000"}, timeout=60
            )
            assert reply.status_code == 200, f"{path} {params}: {reply.text}"
            found = {item[tag]["Value"][0] for item in reply.json()}
            assert found == expected, f"{path} {params}"

    def test_without_limit_every_match_is_returned(self, web: dict[str, Any]) -> None:
        """QIDO with no limit returns all stored instances, not a first page."""
        reply = requests.get(web["url"] + "/instances", timeout=60)
        assert reply.status_code == 200
        paged = requests.get(
            web["url"] + "/instances", params={"limit": "5000"}, timeout=60
        ).json()
        assert len(reply.json()) == len(paged) >= len(web["stored"]) > 100
        assert "warning" not in reply.headers

    def test_limit_and_offset_page_through_every_study(
        self, web: dict[str, Any]
    ) -> None:
        """Pages of 5 studies, by dicomweb-client, cover each study exactly once."""
        every = self._expected(web, lambda d: True)
        seen: list[str] = []
        for offset in range(0, len(every) + 5, 5):
            page = web["client"].search_for_studies(limit=5, offset=offset)
            seen += [item["0020000D"]["Value"][0] for item in page]
        assert sorted(seen) == sorted(every)

    def test_includefield_and_fuzzymatching(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """includefield adds attributes; fuzzymatching finds a misspelt name."""
        path = corpus / "mr_brain_siemens_trio_implicit_le.dcm"
        _study, _series, sop = _uids(path)
        reply = requests.get(
            web["url"] + "/instances",
            params={
                "SOPInstanceUID": sop,
                "includefield": "SliceThickness,00180087",
                "fuzzymatching": "true",
            },
            timeout=60,
        )
        (item,) = reply.json()
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert float(item["00180050"]["Value"][0]) == float(ds.SliceThickness)
        assert float(item["00180087"]["Value"][0]) == float(ds.MagneticFieldStrength)
        assert "warning" not in reply.headers
        name = str(ds.PatientName)
        misspelt = name[:-1] + ("X" if name[-1] != "X" else "Y")
        fuzzy = requests.get(
            web["url"] + "/studies",
            params={"PatientName": misspelt, "fuzzymatching": "true"},
            timeout=60,
        ).json()
        literal = requests.get(
            web["url"] + "/studies", params={"PatientName": misspelt}, timeout=60
        ).json()
        assert literal == []
        assert ds.StudyInstanceUID in [r["0020000D"]["Value"][0] for r in fuzzy]


class TestErrors:
    def _get(self, web: dict[str, Any], path: str, **headers: str) -> Any:
        return requests.get(web["url"] + path, headers=headers, timeout=60)

    def test_bad_limit_is_400_naming_the_parameter(self, web: dict[str, Any]) -> None:
        """limit=-1 is refused with the parameter named."""
        reply = self._get(web, "/studies?limit=-1")
        assert reply.status_code == 400
        assert reply.text == "query parameter limit='-1' is not a whole number >= 0\n"

    def test_unknown_study_is_404(self, web: dict[str, Any]) -> None:
        """A study that is not stored is 404 with the UID named."""
        reply = self._get(web, "/studies/1.2.3.999/metadata")
        assert reply.status_code == 404
        assert reply.text == "nothing is stored under study 1.2.3.999\n"

    def test_frame_out_of_range_is_404(self, web: dict[str, Any], corpus: Path) -> None:
        """Frame 2 of a one-frame instance is 404 naming the valid range."""
        study, series, sop = _uids(corpus / "mr_brain_siemens_trio_rle.dcm")
        reply = self._get(
            web, f"/studies/{study}/series/{series}/instances/{sop}/frames/1,2"
        )
        assert reply.status_code == 404
        assert reply.text == f"instance {sop} has frames 1-1; frame 2 does not exist\n"

    def test_bad_frame_list_and_window_are_400(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """A frame list or window that does not parse is 400 naming it."""
        study, series, sop = _uids(corpus / "mr_brain_siemens_trio_rle.dcm")
        url = f"/studies/{study}/series/{series}/instances/{sop}"
        reply = self._get(web, url + "/frames/1,x")
        assert reply.status_code == 400
        assert reply.text.startswith("frame list '1,x' is not comma-separated")
        reply = self._get(web, url + "/rendered?window=wide")
        assert reply.status_code == 400
        assert reply.text.startswith("parameter window='wide' is not center,width")

    def test_unservable_transfer_syntax_is_406_listing_what_can_be(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """Asking for JPEG baseline is 406, and the reply lists the choices."""
        reply = self._get(
            web,
            _instance_path(corpus / "mr_brain_siemens_trio_rle.dcm"),
            Accept='multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50",
        )
        assert reply.status_code == 406
        assert reply.text.endswith(
            "transfer-syntax *, 1.2.840.10008.1.2.1, 1.2.840.10008.1.2.4.90\n"
        )

    def test_instance_that_cannot_be_transcoded_is_406(
        self, web: dict[str, Any], corpus: Path
    ) -> None:
        """A 3x3 image asked for as JPEG 2000 is 406 naming the instance."""
        path = corpus / "sc_rgb_3x3_odd_length.dcm"
        sop = _uids(path)[2]
        reply = self._get(
            web,
            _instance_path(path),
            Accept='multipart/related; type="application/dicom"; '
            f"transfer-syntax={JPEG2000Lossless}",
        )
        assert reply.status_code == 406
        assert reply.text.startswith(f"cannot transcode instance {sop} from ")
        assert reply.text.endswith("; ask for transfer-syntax=* instead\n")

    def test_delete_marks_deleted_and_a_legal_hold_refuses_with_409(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """DELETE hides a study at once; under a legal hold it is 409 and nothing
        changes."""
        series = sorted((corpus / "series_mr_brain_ge_t1_mprage").glob("*.dcm"))
        held = corpus / "ct_wg04_ct1_explicit_le.dcm"
        with ServerProcess(tmp_path / "data") as server:
            assert _stow(server.http_url + "/studies", [*series[:3], held]).ok
            study_uid = _uids(series[0])[0]
            held_study = _uids(held)[0]
            url = server.http_url

            reply = requests.delete(f"{url}/studies/{study_uid}", timeout=30)
            assert reply.status_code == 204
            assert (
                requests.get(
                    f"{url}/studies/{study_uid}/metadata", timeout=30
                ).status_code
                == 404
            )
            found = requests.get(
                f"{url}/studies", params={"StudyInstanceUID": study_uid}, timeout=30
            )
            assert found.json() == []

            exe = Path(sys.executable).parent / "dicomvault"
            subprocess.run(
                [
                    str(exe),
                    "hold",
                    "add",
                    "--study",
                    held_study,
                    "--reason",
                    "court",
                    "--server",
                    server.address,
                ],
                check=True,
                capture_output=True,
            )
            refused = requests.delete(f"{url}/studies/{held_study}", timeout=30)
            assert refused.status_code == 409
            assert "is under legal hold" in refused.text
            assert (
                requests.get(
                    f"{url}/studies/{held_study}/metadata", timeout=30
                ).status_code
                == 200
            )


class TestLimits:
    def test_oversized_request_is_413_naming_the_limit_and_cors_answers(
        self, tmp_path: Path, corpus: Path
    ) -> None:
        """With http.max_request_bytes=1000 a larger body is 413; CORS allows the
        configured origin."""
        env = {
            "DICOMVAULT_HTTP__MAX_REQUEST_BYTES": "1000",
            "DICOMVAULT_HTTP__CORS_ORIGINS": "https://viewer.example.org",
        }
        with ServerProcess(tmp_path / "data", env=env) as server:
            path = corpus / "mr_brain_siemens_trio_rle.dcm"
            reply = requests.post(
                server.http_url + "/studies",
                data=b"".join(_stow_body([path])),
                headers={"Content-Type": STOW_TYPE.format(BOUNDARY)},
                timeout=60,
            )
            assert reply.status_code == 413
            assert reply.text.endswith(
                "is larger than http.max_request_bytes (1000 bytes)\n"
            )
            streamed = _stow(server.http_url + "/studies", [path])
            assert streamed.status_code == 413
            assert streamed.text == (
                "request body is larger than http.max_request_bytes (1000 bytes)\n"
            )
            preflight = requests.options(
                server.http_url + "/studies",
                headers={
                    "Origin": "https://viewer.example.org",
                    "Access-Control-Request-Method": "GET",
                },
                timeout=30,
            )
            assert preflight.headers["access-control-allow-origin"] == (
                "https://viewer.example.org"
            )
