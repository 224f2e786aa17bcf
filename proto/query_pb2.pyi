from dicomvault.proto import analytics_pb2 as _analytics_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SqlRequest(_message.Message):
    __slots__ = ("sql", "batch_rows", "arrow")
    SQL_FIELD_NUMBER: _ClassVar[int]
    BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    ARROW_FIELD_NUMBER: _ClassVar[int]
    sql: str
    batch_rows: int
    arrow: bool
    def __init__(self, sql: _Optional[str] = ..., batch_rows: _Optional[int] = ..., arrow: _Optional[bool] = ...) -> None: ...

class SqlBatch(_message.Message):
    __slots__ = ("columns", "column_types", "rows_json", "arrow_ipc")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    COLUMN_TYPES_FIELD_NUMBER: _ClassVar[int]
    ROWS_JSON_FIELD_NUMBER: _ClassVar[int]
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    column_types: _containers.RepeatedScalarFieldContainer[str]
    rows_json: str
    arrow_ipc: bytes
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., column_types: _Optional[_Iterable[str]] = ..., rows_json: _Optional[str] = ..., arrow_ipc: _Optional[bytes] = ...) -> None: ...
