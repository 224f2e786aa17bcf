"""The DICOMweb front door (PS3.18): STOW-RS, QIDO-RS and WADO-RS over HTTP.

A thin adapter, like the gRPC servicer: each route parses the request,
calls one :class:`~dicomvault.archive.service.Archive` method, and writes
the reply; errors become HTTP codes through :mod:`archive.api.status`.
Nothing here decides how or where data is stored.

Routes, under the configured base path (default ``/dicomweb``)::

    POST   /studies[/{study}]                                  STOW-RS
    GET    /studies  /series  /instances                       QIDO-RS
    GET    /studies/{study}/series  /studies/{study}/instances
    GET    /studies/{study}/series/{series}/instances
    GET    /studies/{study}[/series/{series}[/instances/{sop}]]     WADO-RS
    GET    .../metadata   .../rendered   .../bulkdata/{tag}
    GET    .../instances/{sop}/frames/{list}[/rendered]
    DELETE /studies/{study}[/series/{series}[/instances/{sop}]]
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from pydicom.datadict import keyword_for_tag
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route

from dicomvault.archive import logkeys as lk
from dicomvault.archive import transcode
from dicomvault.archive.api import multipart as mp
from dicomvault.archive.api.dicomweb_auth import BearerAuthMiddleware
from dicomvault.archive.api.status import http_status
from dicomvault.archive.auth import Authenticator
from dicomvault.archive.errors import (
    ConflictError,
    DicomVaultError,
    InvalidInputError,
    LimitExceededError,
    UnimplementedError,
    UnsupportedError,
    UnsupportedMediaTypeError,
)
from dicomvault.archive.search import MAX_LIMIT

if TYPE_CHECKING:
    from dicomvault.archive.service import Archive, Upload

logger = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
QIDO_RESERVED = ("limit", "offset", "includefield", "fuzzymatching")
# PS3.18 Table 8.7.3-5 and 8.7.4-1: the media type of a stored frame.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}
# Failure reasons of a STOW-RS reply (PS3.4 Annex GG.4 and B.2.3).
FAILURE_PROCESSING = 0x0110
FAILURE_DUPLICATE = 0x0111
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_STUDY_MISMATCH = 0xA900
FAILURE_NOT_DICOM = 0xC000
STOW_FAILURE_REASONS: tuple[tuple[type[DicomVaultError], int], ...] = (
    (ConflictError, FAILURE_DUPLICATE),
    (LimitExceededError, FAILURE_OUT_OF_RESOURCES),
    (InvalidInputError, FAILURE_NOT_DICOM),
    (UnsupportedMediaTypeError, FAILURE_NOT_DICOM),
)

# -- errors ----------------------------------------------------------------------


def error_response(err: BaseException) -> Response:
    """A readable text body with the status from the one status table."""
    code = http_status(err)
    text = str(err) if isinstance(err, DicomVaultError) else "internal server error"
    if code >= 500:
        logger.error("DICOMweb request failed: %s: %s", type(err).__name__, err)
    return Response(text + "\n", status_code=code, media_type="text/plain")


async def _on_error(_request: Request, err: Exception) -> Response:
    return error_response(err)


def _archive(request: Request) -> Archive:
    return request.app.state.archive


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{request.app.state.base_path}"


# -- content negotiation -----------------------------------------------------------


def _accepted(request: Request) -> list[mp.MediaType]:
    header = request.headers.get("accept", "")
    return [mp.parse_media_type(item) for item in header.split(",") if item.strip()]


def _choose_instance_syntax(request: Request) -> str:
    """The transfer syntax of whole instances the client accepts, first wins."""
    offers = _accepted(request)
    if not offers:
        return str(transcode.AS_STORED)
    for offer in offers:
        if offer.value in ("*/*", "multipart/*") or (
            offer.value == "multipart/related"
            and offer.params.get("type", "application/dicom") == "application/dicom"
        ):
            syntax = offer.params.get("transfer-syntax", transcode.AS_STORED)
            if syntax == transcode.AS_STORED or syntax in transcode.TARGET_SYNTAXES:
                return str(syntax)
    raise UnsupportedError(
        "none of the accepted media types can be served "
        f"(Accept: {request.headers.get('accept')}); available: "
        'multipart/related; type="application/dicom" with transfer-syntax '
        + ", ".join([transcode.AS_STORED, *transcode.TARGET_SYNTAXES])
    )


def _choose_frame_syntax(request: Request) -> str:
    """The transfer syntax of frames the client accepts, first wins."""
    offers = _accepted(request)
    if not offers:
        return ExplicitVRLittleEndian
    for offer in offers:
        part = (
            offer.params.get("type", "*/*")
            if offer.value.startswith("multi")
            else (offer.value)
        )
        syntax = offer.params.get("transfer-syntax", "")
        if syntax == transcode.AS_STORED:
            return str(syntax)
        if part in ("*/*", "application/octet-stream") and syntax in (
            "",
            ExplicitVRLittleEndian,
        ):
            return ExplicitVRLittleEndian
        if part in ("image/jp2", "*/*") and syntax in ("", JPEG2000Lossless):
            return JPEG2000Lossless
    raise UnsupportedError(
        "none of the accepted media types can be served "
        f"(Accept: {request.headers.get('accept')}); available: "
        f'multipart/related; type="application/octet-stream"; transfer-syntax='
        f'{ExplicitVRLittleEndian}, multipart/related; type="image/jp2"; '
        f"transfer-syntax={JPEG2000Lossless}, or transfer-syntax=* (as stored)"
    )


def _choose_render_type(request: Request) -> str:
    for offer in _accepted(request) or [mp.MediaType("image/jpeg")]:
        if offer.value in ("*/*", "image/*"):
            return "image/jpeg"
        if offer.value in transcode.RENDER_MEDIA_TYPES:
            return str(offer.value)
    raise UnsupportedError(
        f"cannot render as {request.headers.get('accept')}; available: "
        + ", ".join(transcode.RENDER_MEDIA_TYPES)
    )


# -- STOW-RS -------------------------------------------------------------------------


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise LimitExceededError(
                f"request body is larger than http.max_request_bytes ({limit} bytes)"
            )
        yield chunk


class StudyMismatchError(InvalidInputError):  # type: ignore[misc]
    """A STOW-RS part whose study is not the one in the request URL."""


def _failure_reason(err: DicomVaultError) -> int:
    for kind, code in STOW_FAILURE_REASONS:
        if isinstance(err, kind):
            return code
    return FAILURE_PROCESSING


def _store_part(
    archive: Archive, upload: Upload, study_uid: str
) -> tuple[str, str, str, str]:
    """Store one part: (SOP class, SOP instance, study, series) UIDs."""
    from dicomvault.archive import wado

    if study_uid:
        upload.finish()
        found = wado.upload_study_uid(str(upload.path))
        if found != study_uid:
            upload.discard()
            raise StudyMismatchError(
                f"instance belongs to study {found or '(none)'}, "
                f"not to study {study_uid} named in the request URL"
            )
    outcome = archive.store_upload(upload, "dicomweb")
    sop_class = archive.record(outcome.sop_instance_uid).current_version.sop_class_uid
    return sop_class, outcome.sop_instance_uid, outcome.study_uid, outcome.series_uid


async def stow(request: Request) -> Response:
    """STOW-RS: store every application/dicom part; reply per PS3.18 10.5.3."""
    archive = _archive(request)
    study_uid = request.path_params.get("study", "")
    kind = mp.parse_media_type(request.headers.get("content-type", ""))
    if kind.value != "multipart/related" or kind.params.get(
        "type", "application/dicom"
    ) != ("application/dicom"):
        raise UnsupportedMediaTypeError(
            f'STOW-RS accepts multipart/related; type="application/dicom", '
            f"not {request.headers.get('content-type') or '(no Content-Type)'}"
        )
    limit = request.app.state.max_request_bytes
    declared = int(request.headers.get("content-length") or 0)
    if declared > limit:
        raise LimitExceededError(
            f"request body of {declared} bytes is larger than "
            f"http.max_request_bytes ({limit} bytes)"
        )

    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    reader = mp.MultipartReader(kind.params.get("boundary", ""))
    upload: Upload | None = None
    part_error: DicomVaultError | None = None
    base = _base_url(request)
    async for event in reader.events(_limited(request, limit)):
        if isinstance(event, mp.PartStart):
            part_type = mp.parse_media_type(
                event.headers.get("content-type", "application/dicom")
            )
            part_error = None
            if part_type.value != "application/dicom":
                part_error = UnsupportedMediaTypeError(
                    f"part of type {part_type.value} is not application/dicom"
                )
            else:
                upload = archive.begin_upload()
        elif isinstance(event, mp.PartData):
            if upload is not None and part_error is None:
                try:
                    upload.write(event.data)
                except DicomVaultError as err:
                    part_error = err
        else:
            result = await _finish_part(archive, upload, part_error, study_uid, base)
            (stored if "00081190" in result else failed).append(result)
            upload = None

    reply: dict[str, Any] = {}
    if study_uid or stored:
        study = study_uid or stored[0]["_study"]
        reply["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    for item in stored:
        item.pop("_study")
    if failed:
        reply["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        reply["00081199"] = {"vr": "SQ", "Value": stored}
    # PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none stored.
    code = 200 if not failed else (202 if stored else 409)
    return Response(json.dumps(reply), status_code=code, media_type=DICOM_JSON)


async def _finish_part(
    archive: Archive,
    upload: Upload | None,
    part_error: DicomVaultError | None,
    study_uid: str,
    base: str,
) -> dict[str, Any]:
    if upload is not None and part_error is None:
        try:
            sop_class, sop, study, series = await run_in_threadpool(
                _store_part, archive, upload, study_uid
            )
        except DicomVaultError as err:
            part_error = err
        else:
            url = f"{base}/studies/{study}/series/{series}/instances/{sop}"
            return {
                "00081150": {"vr": "UI", "Value": [sop_class]},
                "00081155": {"vr": "UI", "Value": [sop]},
                "00081190": {"vr": "UR", "Value": [url]},
                "_study": study,
            }
    if upload is not None:
        upload.discard()
    assert part_error is not None
    reason = (
        FAILURE_STUDY_MISMATCH
        if isinstance(part_error, StudyMismatchError)
        else _failure_reason(part_error)
    )
    lk.log_event(
        logger,
        lk.INSTANCE_REJECTED,
        **{lk.REASON: type(part_error).__name__, "failure_reason": f"{reason:04X}"},
    )
    return {"00081197": {"vr": "US", "Value": [reason]}}


# -- QIDO-RS -------------------------------------------------------------------------


def _keyword(name: str) -> str:
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return keyword_for_tag(int(name, 16)) or name
    return name


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise InvalidInputError(
            f"query parameter {name}={value!r} is not a whole number >= 0"
        )
    return number


def qido(request: Request, level: str) -> Response:
    """QIDO-RS at ``level``, nested under the UIDs in the path."""
    match: dict[str, str] = {}
    include: list[str] = []
    for name, value in request.query_params.multi_items():
        if name == "includefield":
            include += [v if v == "all" else _keyword(v) for v in value.split(",") if v]
        elif name not in QIDO_RESERVED:
            match[_keyword(name)] = value
    if "study" in request.path_params:
        match["StudyInstanceUID"] = request.path_params["study"]
    if "series" in request.path_params:
        match["SeriesInstanceUID"] = request.path_params["series"]
    fuzzy = request.query_params.get("fuzzymatching", "false").lower()
    if fuzzy not in ("true", "false"):
        raise InvalidInputError(
            f"query parameter fuzzymatching={fuzzy!r} must be true or false"
        )

    # Without a limit every match is returned, up to the largest page the
    # archive serves; past that a Warning says more can be asked for with
    # offset (PS3.18 8.3.4.4).
    page = _archive(request).search(
        level,
        match,
        include,
        limit=_int_param(request, "limit", MAX_LIMIT),
        offset=_int_param(request, "offset", 0),
        fuzzy=fuzzy == "true",
    )
    headers = {}
    if "limit" not in request.query_params and page.next_offset:
        headers["Warning"] = (
            '299 dicomvault: "The number of results exceeded the maximum '
            'supported by the server. Additional results can be requested."'
        )
    return Response(json.dumps(page.results), media_type=DICOM_JSON, headers=headers)


# -- WADO-RS -------------------------------------------------------------------------


def _uids(request: Request) -> tuple[str, str, str]:
    p = request.path_params
    return p["study"], p.get("series", ""), p.get("sop", "")


def retrieve(request: Request) -> Response:
    """WADO-RS: every instance under the path as multipart/related DICOM."""
    archive = _archive(request)
    syntax = _choose_instance_syntax(request)
    records = archive.instances_under(*_uids(request))
    boundary = mp.new_boundary()
    # Transcode the first instance before the status line goes out, so a
    # single instance that cannot be converted is a 406, not a cut stream.
    first: dict[str, bytes] = {}
    if syntax != transcode.AS_STORED:
        sop_uid = records[0].sop_instance_uid
        first[sop_uid] = archive.transcode(sop_uid, syntax)

    def pieces(sop_uid: str) -> Iterator[bytes]:
        if syntax == transcode.AS_STORED:
            yield from archive.retrieve(sop_uid)[1]
        else:
            yield first.pop(sop_uid, b"") or archive.transcode(sop_uid, syntax)

    def part_type(sop_uid: str) -> str:
        if syntax != transcode.AS_STORED:
            return f"application/dicom; transfer-syntax={syntax}"
        stored = archive.record(sop_uid).current_version.transfer_syntax_uid
        return f"application/dicom; transfer-syntax={stored}"

    parts = (
        (part_type(r.sop_instance_uid), pieces(r.sop_instance_uid)) for r in records
    )
    return StreamingResponse(
        mp.write_parts(boundary, parts),
        media_type=mp.content_type(boundary, "application/dicom"),
    )


def _absolute_bulk_uris(element: Any, prefix: str) -> Any:
    if isinstance(element, dict):
        out = {}
        for key, value in element.items():
            if key == "BulkDataURI" and isinstance(value, str) and "://" not in value:
                out[key] = prefix + value
            else:
                out[key] = _absolute_bulk_uris(value, prefix)
        return out
    if isinstance(element, list):
        return [_absolute_bulk_uris(v, prefix) for v in element]
    return element


def metadata(request: Request) -> Response:
    """WADO-RS metadata: DICOM JSON of every instance, with absolute BulkDataURIs."""
    archive = _archive(request)
    base = _base_url(request)
    items = []
    for record in archive.instances_under(*_uids(request)):
        prefix = (
            f"{base}/studies/{record.study_uid}/series/{record.series_uid}"
            f"/instances/{record.sop_instance_uid}/"
        )
        items.append(_absolute_bulk_uris(archive.instance_metadata(record), prefix))
    return Response(json.dumps(items), media_type=DICOM_JSON)


def bulkdata(request: Request) -> Response:
    """WADO-RS bulk data: one element's value as one octet-stream part."""
    archive = _archive(request)
    (record,) = archive.instances_under(*_uids(request))
    data = archive.bulkdata(record.sop_instance_uid, request.path_params["tag"])
    boundary = mp.new_boundary()
    body = b"".join(mp.write_parts(boundary, [("application/octet-stream", [data])]))
    return Response(
        body, media_type=mp.content_type(boundary, "application/octet-stream")
    )


def parse_frame_list(text: str) -> list[int]:
    """Parse ``1,3,5`` into frame numbers.

    Raises
    ------
    InvalidInputError
        Naming the bad frame list.
    """
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        numbers = [0]
    if any(n < 1 for n in numbers):
        raise InvalidInputError(
            f"frame list {text!r} is not comma-separated frame numbers from 1 "
            "(e.g. frames/1,3,5)"
        )
    return numbers


def frames(request: Request) -> Response:
    """WADO-RS frames in the negotiated transfer syntax, one part per frame."""
    archive = _archive(request)
    syntax = _choose_frame_syntax(request)
    (record,) = archive.instances_under(*_uids(request))
    numbers = parse_frame_list(request.path_params["frames"])
    produced = archive.frames_as(record.sop_instance_uid, numbers, syntax)
    # Pull the first frame now, so a bad number or a missing codec is an
    # error status instead of a broken stream.
    first = next(iter(produced))
    boundary = mp.new_boundary()

    def parts() -> Iterator[tuple[str, list[bytes]]]:
        for _number, data, ts in (first, *produced):
            media = (
                "application/octet-stream"
                if ts == ExplicitVRLittleEndian
                else FRAME_MEDIA_TYPES.get(ts, "application/octet-stream")
            )
            yield f"{media}; transfer-syntax={ts}", [data]

    outer = "application/octet-stream" if syntax == ExplicitVRLittleEndian else "*/*"
    if syntax == JPEG2000Lossless:
        outer = "image/jp2"
    return StreamingResponse(
        mp.write_parts(boundary, parts()), media_type=mp.content_type(boundary, outer)
    )


def rendered(request: Request) -> Response:
    """WADO-RS rendered: a frame (the first for an instance) as JPEG or PNG."""
    archive = _archive(request)
    media_type = _choose_render_type(request)
    window_text = request.query_params.get("window")
    window = transcode.parse_window(window_text) if window_text else None
    (record,) = archive.instances_under(*_uids(request))
    number = parse_frame_list(request.path_params.get("frames", "1"))
    if len(number) != 1:
        raise InvalidInputError("a rendered frame takes exactly one frame number")
    data = archive.render(record.sop_instance_uid, number[0], media_type, window)
    return Response(data, media_type=media_type)


def delete(request: Request) -> Response:
    """Delete a study, series or instance through the archive's deletion path."""
    archive = _archive(request)
    study, series, sop = _uids(request)
    remove = getattr(archive, "delete", None)
    if remove is None:
        raise UnimplementedError(
            "DELETE is not available: this archive has no deletion path yet; "
            "nothing was deleted"
        )
    level = "INSTANCE" if sop else ("SERIES" if series else "STUDY")
    remove(level, study, series or None, sop or None, reason="DICOMweb DELETE request")
    return Response(status_code=204)


# -- the application -------------------------------------------------------------------


def _routes() -> list[Route]:
    study = "/studies/{study}"
    series = study + "/series/{series}"
    sop = series + "/instances/{sop}"
    return [
        Route("/studies", stow, methods=["POST"]),
        Route(study, stow, methods=["POST"]),
        Route("/studies", partial(qido, level="STUDY"), methods=["GET"]),
        Route("/series", partial(qido, level="SERIES"), methods=["GET"]),
        Route("/instances", partial(qido, level="INSTANCE"), methods=["GET"]),
        Route(study + "/series", partial(qido, level="SERIES"), methods=["GET"]),
        Route(study + "/instances", partial(qido, level="INSTANCE"), methods=["GET"]),
        Route(series + "/instances", partial(qido, level="INSTANCE"), methods=["GET"]),
        *(Route(p, retrieve, methods=["GET"]) for p in (study, series, sop)),
        *(
            Route(p + "/metadata", metadata, methods=["GET"])
            for p in (study, series, sop)
        ),
        *(Route(p, delete, methods=["DELETE"]) for p in (study, series, sop)),
        Route(sop + "/bulkdata/{tag}", bulkdata, methods=["GET"]),
        Route(sop + "/frames/{frames}", frames, methods=["GET"]),
        Route(sop + "/rendered", rendered, methods=["GET"]),
        Route(sop + "/frames/{frames}/rendered", rendered, methods=["GET"]),
    ]


def build_app(
    archive: Archive,
    base_path: str = "/dicomweb",
    cors_origins: str = "",
    max_request_bytes: int = 4 << 30,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """The DICOMweb ASGI application over ``archive``.

    Parameters
    ----------
    archive
        The open archive every route calls.
    base_path
        Where the routes are mounted (``/dicomweb``).
    cors_origins
        Comma-separated origins allowed to call from a browser; ``*`` for any.
    authenticator
        Checks bearer tokens on every route; None runs open (loopback only).
    max_request_bytes
        Largest STOW-RS body; larger ones are answered 413.
    """
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    # The first middleware is the outermost: CORS wraps the token check so a
    # browser also reads the CORS headers of a 401 or 403.
    middleware = []
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["*"],
            )
        )
    middleware.append(
        Middleware(
            BearerAuthMiddleware,
            authenticator=authenticator,
            audit_log=archive.audit_log(),
        )
    )
    app = Starlette(
        routes=[Mount(base_path.rstrip("/"), routes=_routes())],
        middleware=middleware,
        exception_handlers={Exception: _on_error, DicomVaultError: _on_error},
    )
    app.state.archive = archive
    app.state.base_path = base_path.rstrip("/")
    app.state.max_request_bytes = max_request_bytes
    return app
