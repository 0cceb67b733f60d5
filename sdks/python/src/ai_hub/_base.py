"""The base of every model: attribute access over the JSON the platform sent, nested models
built from the annotations, and the raw JSON kept (``to_dict()``), fields the SDK does not know
yet included, so a newer platform never breaks an older SDK.

With ``AIHUB_SDK_STRICT=1`` (the SDK's own tests set it) a response that does not match the
OpenAPI document the models were generated from raises :class:`ModelDriftError`: a field the
document does not name, a required field missing, or a value of another type.
"""

from __future__ import annotations

import keyword
import os
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)


class _NotGiven:
    """An argument left out, which is not sent (unlike ``None``, which is sent as ``null``)."""

    _instance: Optional["_NotGiven"] = None

    def __new__(cls) -> "_NotGiven":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


class ModelDriftError(TypeError):
    """A response differs from the OpenAPI document the SDK's models were generated from."""


def strict() -> bool:
    return os.environ.get("AIHUB_SDK_STRICT", "") not in ("", "0", "false")


_Converter = Callable[[Any], Any]


class Model:
    """A resource as the platform sent it."""

    __required__: ClassVar[Tuple[str, ...]] = ()
    __converters__: ClassVar[Optional[Dict[str, Tuple[Any, _Converter]]]] = None

    _data: Dict[str, Any]
    #: The ``x-request-id`` of the response this came in (the events' correlation id).
    _request_id: Optional[str]

    def __init__(self, data: Optional[Mapping[str, Any]] = None, **fields: Any) -> None:
        raw = dict(data or {})
        raw.update(fields)
        object.__setattr__(self, "_data", raw)
        object.__setattr__(self, "_request_id", None)
        converters = type(self)._converters()
        if strict():
            _check_model(type(self), raw, type(self).__name__)
        for name, (_, convert) in converters.items():
            attribute = name + "_" if name in _RESERVED else name
            object.__setattr__(self, attribute, convert(raw[name]) if name in raw else None)

    @classmethod
    def _converters(cls) -> Dict[str, Tuple[Any, _Converter]]:
        if cls.__dict__.get("__converters__") is None:
            hints = get_type_hints(cls)
            converters = {}
            for name, hint in hints.items():
                if name.startswith("_") or get_origin(hint) is ClassVar:
                    continue
                wire = name[:-1] if name.endswith("_") and name[:-1] in _RESERVED else name
                converters[wire] = (hint, _converter(hint))
            cls.__converters__ = converters
        return cls.__converters__  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        # Fields newer than this SDK are still readable.
        data = object.__getattribute__(self, "_data")
        if name in data:
            return data[name]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON object as received."""
        return _plain(self._data)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._data == self._data  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._data.items())
        return f"{type(self).__name__}({fields})"


# Wire names that are Python keywords (`from`) are attributes with a trailing underscore.
_RESERVED = set(keyword.kwlist)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Model)


def _converter(hint: Any) -> _Converter:
    if _is_model(hint):
        return lambda v: hint(v) if isinstance(v, dict) else v
    origin = get_origin(hint)
    if origin in (list, List):
        (item,) = get_args(hint) or (Any,)
        convert = _converter(item)
        return lambda v: [convert(x) for x in v] if isinstance(v, list) else v
    if origin is Union:
        options = [a for a in get_args(hint) if a is not type(None)]
        for_list = next((_converter(a) for a in options if get_origin(a) in (list, List)), None)
        for_dict = next((_converter(a) for a in options if _is_model(a)), None)

        def convert_union(v: Any) -> Any:
            if isinstance(v, list) and for_list is not None:
                return for_list(v)
            if isinstance(v, dict) and for_dict is not None:
                return for_dict(v)
            return v

        return convert_union
    return lambda v: v


def _check_model(cls: type, raw: Mapping[str, Any], path: str) -> None:
    converters = cls._converters()  # type: ignore[attr-defined]
    unknown = sorted(set(raw) - set(converters))
    if unknown:
        raise ModelDriftError(f"{path}: fields {unknown} are not in the OpenAPI document")
    missing = [name for name in cls.__required__ if name not in raw]  # type: ignore[attr-defined]
    if missing:
        raise ModelDriftError(f"{path}: required fields {missing} are missing")
    for name, (hint, _) in converters.items():
        if name in raw:
            _check(hint, raw[name], f"{path}.{name}")


def _check(hint: Any, value: Any, path: str) -> None:
    if _is_model(hint):
        if not isinstance(value, dict):
            raise ModelDriftError(f"{path}: expected an object, got {value!r}")
        _check_model(hint, value, path)
        return
    origin = get_origin(hint)
    if hint is Any or hint is object:
        return
    if origin is Union:
        errors = []
        for option in get_args(hint):
            try:
                _check(option, value, path)
                return
            except ModelDriftError as e:
                errors.append(str(e))
        raise ModelDriftError(f"{path}: {value!r} matches none of {get_args(hint)}: {errors}")
    if origin is Literal:
        if value not in get_args(hint):
            raise ModelDriftError(f"{path}: {value!r} is not one of {get_args(hint)}")
        return
    if origin in (list, List):
        if not isinstance(value, list):
            raise ModelDriftError(f"{path}: expected a list, got {value!r}")
        (item,) = get_args(hint) or (Any,)
        for i, v in enumerate(value):
            _check(item, v, f"{path}[{i}]")
        return
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ModelDriftError(f"{path}: expected an object, got {value!r}")
        return
    if hint is type(None):
        if value is not None:
            raise ModelDriftError(f"{path}: expected null, got {value!r}")
        return
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(hint, type):
        ok = isinstance(value, hint)
    else:
        ok = True
    if not ok:
        raise ModelDriftError(f"{path}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
