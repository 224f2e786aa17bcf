from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeidentifyStudyRequest(_message.Message):
    __slots__ = ("study_uid", "profile", "keep_dates", "keep_uids", "keep_device", "keep_institution", "keep_patient_characteristics", "keep_private_tags", "to")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    KEEP_DATES_FIELD_NUMBER: _ClassVar[int]
    KEEP_UIDS_FIELD_NUMBER: _ClassVar[int]
    KEEP_DEVICE_FIELD_NUMBER: _ClassVar[int]
    KEEP_INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_PATIENT_CHARACTERISTICS_FIELD_NUMBER: _ClassVar[int]
    KEEP_PRIVATE_TAGS_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    profile: str
    keep_dates: bool
    keep_uids: bool
    keep_device: bool
    keep_institution: bool
    keep_patient_characteristics: bool
    keep_private_tags: _containers.RepeatedScalarFieldContainer[str]
    to: str
    def __init__(self, study_uid: _Optional[str] = ..., profile: _Optional[str] = ..., keep_dates: _Optional[bool] = ..., keep_uids: _Optional[bool] = ..., keep_device: _Optional[bool] = ..., keep_institution: _Optional[bool] = ..., keep_patient_characteristics: _Optional[bool] = ..., keep_private_tags: _Optional[_Iterable[str]] = ..., to: _Optional[str] = ...) -> None: ...

class BurnedInInstance(_message.Message):
    __slots__ = ("sop_instance_uid", "reason")
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sop_instance_uid: str
    reason: str
    def __init__(self, sop_instance_uid: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeidentifyStudyResponse(_message.Message):
    __slots__ = ("new_study_uid", "keys", "burned_in")
    NEW_STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    BURNED_IN_FIELD_NUMBER: _ClassVar[int]
    new_study_uid: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    burned_in: _containers.RepeatedCompositeFieldContainer[BurnedInInstance]
    def __init__(self, new_study_uid: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., burned_in: _Optional[_Iterable[_Union[BurnedInInstance, _Mapping]]] = ...) -> None: ...
