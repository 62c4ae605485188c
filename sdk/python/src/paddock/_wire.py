"""JSON to and from the dataclasses of :mod:`paddock.models`.

A dataclass field maps to the JSON key of the same name, or to
``metadata["wire"]`` when that is set (``from_`` is ``from``). Fields with
``metadata["sdk"]`` are the SDK's own and never on the wire. The field's
type says how to read the value: scalars, ``list[X]``, ``dict[str, X]``,
``X | None``, ``Literal[...]`` and nested dataclasses. The same tables are
what ``tests/test_openapi.py`` checks against ``docs/openapi.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

from .errors import ProtocolError

T = TypeVar("T")

_MISSING = dataclasses.MISSING


def wire_name(f: dataclasses.Field[Any]) -> str:
    """The JSON key of dataclass field ``f``."""
    return str(f.metadata.get("wire", f.name))


def wire_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of dataclass ``cls`` that are on the wire."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("sdk")]


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    """The evaluated type hints of ``cls`` (cached)."""
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = typing.get_type_hints(cls)
    return found


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _convert(tp: Any, value: Any, where: str) -> Any:
    inner, optional = strip_optional(tp)
    if value is None:
        if optional or inner is Any:
            return None
        raise ProtocolError(f"the answer's {where} is null")
    tp = inner
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        # A value this SDK does not know yet is passed on as it came.
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"the answer's {where} is not a list")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"the answer's {where} is not an object")
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_json(tp, value, where)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is bool or tp is str:
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ProtocolError(f"the answer's {where} is {value!r}, not a {tp.__name__}")


def from_json(cls: type[T], value: Any, where: str = "") -> T:
    """An instance of dataclass ``cls`` read from the JSON object ``value``.

    Keys the class does not know are ignored (answers may grow); a key the
    class requires (a field without a default) must be present.
    """
    hook = getattr(cls, "_from_wire", None)
    if hook is not None:
        return typing.cast(T, hook(value))
    name = where or cls.__name__
    if not isinstance(value, dict):
        raise ProtocolError(f"the answer's {name} is not a JSON object: {value!r:.200}")
    kwargs: dict[str, Any] = {}
    th = hints(cls)
    for f in wire_fields(cls):
        key = wire_name(f)
        if key in value:
            kwargs[f.name] = _convert(th[f.name], value[key], f"{name}.{key}")
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ProtocolError(f"the answer's {name} lacks {key!r}")
    return cls(**kwargs)


def to_json(obj: Any) -> Any:
    """The JSON value of ``obj``: a dataclass becomes an object of its wire
    fields that are not ``None``; lists, dicts and scalars as they are."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in wire_fields(type(obj)):
            v = getattr(obj, f.name)
            if v is not None:
                out[wire_name(f)] = to_json(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj
