from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MoveStudyRequest(_message.Message):
    __slots__ = ("study_uid", "to_tier")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    TO_TIER_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    to_tier: str
    def __init__(self, study_uid: _Optional[str] = ..., to_tier: _Optional[str] = ...) -> None: ...

class MoveStudyResponse(_message.Message):
    __slots__ = ("study_uid", "to_tier", "from_tiers", "versions", "objects", "bytes", "op_id")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    TO_TIER_FIELD_NUMBER: _ClassVar[int]
    FROM_TIERS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    to_tier: str
    from_tiers: _containers.RepeatedScalarFieldContainer[str]
    versions: int
    objects: int
    bytes: int
    op_id: str
    def __init__(self, study_uid: _Optional[str] = ..., to_tier: _Optional[str] = ..., from_tiers: _Optional[_Iterable[str]] = ..., versions: _Optional[int] = ..., objects: _Optional[int] = ..., bytes: _Optional[int] = ..., op_id: _Optional[str] = ...) -> None: ...

class TierStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TierUsage(_message.Message):
    __slots__ = ("tier", "studies", "instances", "bytes")
    TIER_FIELD_NUMBER: _ClassVar[int]
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    tier: str
    studies: int
    instances: int
    bytes: int
    def __init__(self, tier: _Optional[str] = ..., studies: _Optional[int] = ..., instances: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class MoveState(_message.Message):
    __slots__ = ("op_id", "study_uid", "to_tier", "detail")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    TO_TIER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    study_uid: str
    to_tier: str
    detail: str
    def __init__(self, op_id: _Optional[str] = ..., study_uid: _Optional[str] = ..., to_tier: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class TierStatusResponse(_message.Message):
    __slots__ = ("tiers", "pending_moves", "failed_moves")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    PENDING_MOVES_FIELD_NUMBER: _ClassVar[int]
    FAILED_MOVES_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[TierUsage]
    pending_moves: _containers.RepeatedCompositeFieldContainer[MoveState]
    failed_moves: _containers.RepeatedCompositeFieldContainer[MoveState]
    def __init__(self, tiers: _Optional[_Iterable[_Union[TierUsage, _Mapping]]] = ..., pending_moves: _Optional[_Iterable[_Union[MoveState, _Mapping]]] = ..., failed_moves: _Optional[_Iterable[_Union[MoveState, _Mapping]]] = ...) -> None: ...
