from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceInfo(_message.Message):
    __slots__ = ("sop_instance_uid", "sop_class_uid", "study_uid", "series_uid", "transfer_syntax_uid", "size", "sha256", "number_of_frames", "tier", "version")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_CLASS_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    size: int
    sha256: str
    number_of_frames: int
    tier: str
    version: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., sop_class_uid: _Optional[str] = ..., study_uid: _Optional[str] = ..., series_uid: _Optional[str] = ..., transfer_syntax_uid: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., number_of_frames: _Optional[int] = ..., tier: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class PixelDescription(_message.Message):
    __slots__ = ("rows", "columns", "samples_per_pixel", "bits_allocated", "bits_stored", "pixel_representation", "photometric_interpretation", "planar_configuration", "transfer_syntax_uid", "dtype", "shape")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_PIXEL_FIELD_NUMBER: _ClassVar[int]
    BITS_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    BITS_STORED_FIELD_NUMBER: _ClassVar[int]
    PIXEL_REPRESENTATION_FIELD_NUMBER: _ClassVar[int]
    PHOTOMETRIC_INTERPRETATION_FIELD_NUMBER: _ClassVar[int]
    PLANAR_CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SYNTAX_UID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    transfer_syntax_uid: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rows: _Optional[int] = ..., columns: _Optional[int] = ..., samples_per_pixel: _Optional[int] = ..., bits_allocated: _Optional[int] = ..., bits_stored: _Optional[int] = ..., pixel_representation: _Optional[int] = ..., photometric_interpretation: _Optional[str] = ..., planar_configuration: _Optional[int] = ..., transfer_syntax_uid: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...
