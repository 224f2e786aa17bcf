from dicomvault.proto import deid_pb2 as _deid_pb2
from dicomvault.proto import replication_pb2 as _replication_pb2
from dicomvault.proto import lifecycle_pb2 as _lifecycle_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RebuildIndexRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RebuildIndexResponse(_message.Message):
    __slots__ = ("instances", "studies", "seconds")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    instances: int
    studies: int
    seconds: float
    def __init__(self, instances: _Optional[int] = ..., studies: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("repair",)
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    repair: bool
    def __init__(self, repair: _Optional[bool] = ...) -> None: ...

class VerifyProblem(_message.Message):
    __slots__ = ("kind", "tier", "key", "detail", "repaired")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    tier: str
    key: str
    detail: str
    repaired: bool
    def __init__(self, kind: _Optional[str] = ..., tier: _Optional[str] = ..., key: _Optional[str] = ..., detail: _Optional[str] = ..., repaired: _Optional[bool] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("instances_checked", "objects_checked", "bytes_checked", "problems")
    INSTANCES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BYTES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    instances_checked: int
    objects_checked: int
    bytes_checked: int
    problems: _containers.RepeatedCompositeFieldContainer[VerifyProblem]
    def __init__(self, instances_checked: _Optional[int] = ..., objects_checked: _Optional[int] = ..., bytes_checked: _Optional[int] = ..., problems: _Optional[_Iterable[_Union[VerifyProblem, _Mapping]]] = ...) -> None: ...
