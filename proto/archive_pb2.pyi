from dicomvault.proto import common_pb2 as _common_pb2
from dicomvault.proto import replication_pb2 as _replication_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StoreOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_OUTCOME_UNSPECIFIED: _ClassVar[StoreOutcome]
    STORED: _ClassVar[StoreOutcome]
    DUPLICATE: _ClassVar[StoreOutcome]
    REJECTED: _ClassVar[StoreOutcome]
    STORED_NEW_VERSION: _ClassVar[StoreOutcome]

class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVEL_UNSPECIFIED: _ClassVar[Level]
    PATIENT: _ClassVar[Level]
    STUDY: _ClassVar[Level]
    SERIES: _ClassVar[Level]
    INSTANCE: _ClassVar[Level]
STORE_OUTCOME_UNSPECIFIED: StoreOutcome
STORED: StoreOutcome
DUPLICATE: StoreOutcome
REJECTED: StoreOutcome
STORED_NEW_VERSION: StoreOutcome
LEVEL_UNSPECIFIED: Level
PATIENT: Level
STUDY: Level
SERIES: Level
INSTANCE: Level

class StoreStart(_message.Message):
    __slots__ = ("label", "size", "sha256", "calling_application")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CALLING_APPLICATION_FIELD_NUMBER: _ClassVar[int]
    label: str
    size: int
    sha256: str
    calling_application: str
    def __init__(self, label: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., calling_application: _Optional[str] = ...) -> None: ...

class StoreEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("start", "chunk", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: StoreStart
    chunk: bytes
    end: StoreEnd
    def __init__(self, start: _Optional[_Union[StoreStart, _Mapping]] = ..., chunk: _Optional[bytes] = ..., end: _Optional[_Union[StoreEnd, _Mapping]] = ...) -> None: ...

class StoreResult(_message.Message):
    __slots__ = ("label", "sop_instance_uid", "outcome", "reason", "study_uid", "series_uid", "sha256", "size", "version")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    label: str
    sop_instance_uid: str
    outcome: StoreOutcome
    reason: str
    study_uid: str
    series_uid: str
    sha256: str
    size: int
    version: str
    def __init__(self, label: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., outcome: _Optional[_Union[StoreOutcome, str]] = ..., reason: _Optional[str] = ..., study_uid: _Optional[str] = ..., series_uid: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[StoreResult, _Mapping]]] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("sop_instance_uid", "version")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    version: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class RetrieveChunk(_message.Message):
    __slots__ = ("info", "data")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.InstanceInfo
    data: bytes
    def __init__(self, info: _Optional[_Union[_common_pb2.InstanceInfo, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetFramesRequest(_message.Message):
    __slots__ = ("sop_instance_uid", "frame_numbers", "decode", "version")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    DECODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    frame_numbers: _containers.RepeatedScalarFieldContainer[int]
    decode: bool
    version: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., frame_numbers: _Optional[_Iterable[int]] = ..., decode: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class FramePart(_message.Message):
    __slots__ = ("frame_number", "pixel", "offset", "frame_size", "data")
    FRAME_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FRAME_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    frame_number: int
    pixel: _common_pb2.PixelDescription
    offset: int
    frame_size: int
    data: bytes
    def __init__(self, frame_number: _Optional[int] = ..., pixel: _Optional[_Union[_common_pb2.PixelDescription, _Mapping]] = ..., offset: _Optional[int] = ..., frame_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("level", "match", "include_fields", "limit", "offset", "count_total", "fuzzy", "cursor")
    class MatchEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FUZZY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    level: Level
    match: _containers.ScalarMap[str, str]
    include_fields: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    offset: int
    count_total: bool
    fuzzy: bool
    cursor: str
    def __init__(self, level: _Optional[_Union[Level, str]] = ..., match: _Optional[_Mapping[str, str]] = ..., include_fields: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., count_total: _Optional[bool] = ..., fuzzy: _Optional[bool] = ..., cursor: _Optional[str] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("dicom_json",)
    DICOM_JSON_FIELD_NUMBER: _ClassVar[int]
    dicom_json: str
    def __init__(self, dicom_json: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "total", "next_offset", "next_cursor")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    total: int
    next_offset: int
    next_cursor: str
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., total: _Optional[int] = ..., next_offset: _Optional[int] = ..., next_cursor: _Optional[str] = ...) -> None: ...
