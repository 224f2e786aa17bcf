from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchChangesRequest(_message.Message):
    __slots__ = ("from_sequence",)
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    def __init__(self, from_sequence: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("sequence", "type", "study_uid", "series_uid", "sop_instance_uid", "version", "tier", "change_json")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CHANGE_JSON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    version: str
    tier: str
    change_json: str
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[str] = ..., study_uid: _Optional[str] = ..., series_uid: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., version: _Optional[str] = ..., tier: _Optional[str] = ..., change_json: _Optional[str] = ...) -> None: ...

class ReplicationStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RegionStatus(_message.Message):
    __slots__ = ("region", "cursor", "last_sequence", "pending_changes", "pending_bytes", "oldest_pending_age_seconds", "last_error")
    REGION_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGES_FIELD_NUMBER: _ClassVar[int]
    PENDING_BYTES_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    region: str
    cursor: int
    last_sequence: int
    pending_changes: int
    pending_bytes: int
    oldest_pending_age_seconds: float
    last_error: str
    def __init__(self, region: _Optional[str] = ..., cursor: _Optional[int] = ..., last_sequence: _Optional[int] = ..., pending_changes: _Optional[int] = ..., pending_bytes: _Optional[int] = ..., oldest_pending_age_seconds: _Optional[float] = ..., last_error: _Optional[str] = ...) -> None: ...

class ReplicationStatusResponse(_message.Message):
    __slots__ = ("regions",)
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    regions: _containers.RepeatedCompositeFieldContainer[RegionStatus]
    def __init__(self, regions: _Optional[_Iterable[_Union[RegionStatus, _Mapping]]] = ...) -> None: ...
