from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddExtendedAttributeRequest(_message.Message):
    __slots__ = ("attribute", "vr")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VR_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    vr: str
    def __init__(self, attribute: _Optional[str] = ..., vr: _Optional[str] = ...) -> None: ...

class ExtendedAttribute(_message.Message):
    __slots__ = ("tag", "keyword", "vr", "column", "sql_type", "filled", "seconds")
    TAG_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    VR_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    SQL_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILLED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    tag: str
    keyword: str
    vr: str
    column: str
    sql_type: str
    filled: int
    seconds: float
    def __init__(self, tag: _Optional[str] = ..., keyword: _Optional[str] = ..., vr: _Optional[str] = ..., column: _Optional[str] = ..., sql_type: _Optional[str] = ..., filled: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class ListExtendedAttributesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExtendedAttributesResponse(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedCompositeFieldContainer[ExtendedAttribute]
    def __init__(self, attributes: _Optional[_Iterable[_Union[ExtendedAttribute, _Mapping]]] = ...) -> None: ...

class ExportParquetRequest(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...

class ExportedTable(_message.Message):
    __slots__ = ("table", "rows", "url")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    table: str
    rows: int
    url: str
    def __init__(self, table: _Optional[str] = ..., rows: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class ExportParquetResponse(_message.Message):
    __slots__ = ("tables", "seconds")
    TABLES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[ExportedTable]
    seconds: float
    def __init__(self, tables: _Optional[_Iterable[_Union[ExportedTable, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...
