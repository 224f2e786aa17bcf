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

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyResponse(_message.Message):
    __slots__ = ("version", "text", "rule_names")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    RULE_NAMES_FIELD_NUMBER: _ClassVar[int]
    version: int
    text: str
    rule_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., text: _Optional[str] = ..., rule_names: _Optional[_Iterable[str]] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ApplyPolicyRequest(_message.Message):
    __slots__ = ("dry_run", "confirm")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    confirm: bool
    def __init__(self, dry_run: _Optional[bool] = ..., confirm: _Optional[bool] = ...) -> None: ...

class PlannedMove(_message.Message):
    __slots__ = ("study_uid", "from_tiers", "to_tier", "bytes", "rule")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIERS_FIELD_NUMBER: _ClassVar[int]
    TO_TIER_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    from_tiers: _containers.RepeatedScalarFieldContainer[str]
    to_tier: str
    bytes: int
    rule: str
    def __init__(self, study_uid: _Optional[str] = ..., from_tiers: _Optional[_Iterable[str]] = ..., to_tier: _Optional[str] = ..., bytes: _Optional[int] = ..., rule: _Optional[str] = ...) -> None: ...

class ApplyPolicyResponse(_message.Message):
    __slots__ = ("policy_version", "planned", "planned_bytes", "archive_bytes", "needs_confirmation", "moved", "failed")
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    PLANNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NEEDS_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    policy_version: int
    planned: _containers.RepeatedCompositeFieldContainer[PlannedMove]
    planned_bytes: int
    archive_bytes: int
    needs_confirmation: bool
    moved: _containers.RepeatedCompositeFieldContainer[MoveStudyResponse]
    failed: _containers.RepeatedCompositeFieldContainer[MoveState]
    def __init__(self, policy_version: _Optional[int] = ..., planned: _Optional[_Iterable[_Union[PlannedMove, _Mapping]]] = ..., planned_bytes: _Optional[int] = ..., archive_bytes: _Optional[int] = ..., needs_confirmation: _Optional[bool] = ..., moved: _Optional[_Iterable[_Union[MoveStudyResponse, _Mapping]]] = ..., failed: _Optional[_Iterable[_Union[MoveState, _Mapping]]] = ...) -> None: ...

class HoldRequest(_message.Message):
    __slots__ = ("kind", "value", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    reason: str
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListHoldsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Hold(_message.Message):
    __slots__ = ("kind", "value", "reason", "since")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    reason: str
    since: str
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ..., reason: _Optional[str] = ..., since: _Optional[str] = ...) -> None: ...

class HoldListResponse(_message.Message):
    __slots__ = ("holds",)
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    def __init__(self, holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ...) -> None: ...

class RetentionPreviewRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DueStudy(_message.Message):
    __slots__ = ("study_uid", "rule", "bytes", "held")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    rule: str
    bytes: int
    held: bool
    def __init__(self, study_uid: _Optional[str] = ..., rule: _Optional[str] = ..., bytes: _Optional[int] = ..., held: _Optional[bool] = ...) -> None: ...

class RetentionPreviewResponse(_message.Message):
    __slots__ = ("due",)
    DUE_FIELD_NUMBER: _ClassVar[int]
    due: _containers.RepeatedCompositeFieldContainer[DueStudy]
    def __init__(self, due: _Optional[_Iterable[_Union[DueStudy, _Mapping]]] = ...) -> None: ...

class PurgeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: int
    def __init__(self, instances: _Optional[int] = ...) -> None: ...
