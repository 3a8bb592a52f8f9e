"""Contract views made from the read model's own rows without running pydantic's validation.

A page of views validated from its rows' dicts was most of an answer's Python: for a thread of 200
replies ~0.65–0.97 ms of the ~1 ms under the query handler (py-spy, bench/README.md, "Views from
trusted rows"). The rows come from our own tables through statements of ours: every column already
has the view field's Python type (asyncpg's UUIDs, aware datetimes, lists for arrays, ``str``,
``int``, ``bool``), so validation only re-checks them. What it does change is the enumerations
(text columns → ``Status``, ``Role``, …); :class:`RowViews` converts those by lookup — an unknown value
raises, as validation would — and sets every other field as the row has it, in the model's field
order (the order ``answer_json`` and pydantic write).

What this needs from a view model, checked when the :class:`RowViews` is made (at import): no
validators or custom serialisation of its own, ``extra="forbid"``, and each field a plain type
(``_PLAIN``), a list, an enumeration, or one of them or None. A model that grows anything else
fails at import rather than passing unchecked values. The instances are made the way pydantic's
own ``model_construct`` makes them (``__dict__``, ``__pydantic_fields_set__``, no extras or private
attributes), without its per-field Python loop; tests/unit/test_row_views.py checks that they equal,
and serialise byte for byte like, the views ``model_validate`` makes from the same rows.
"""

from __future__ import annotations

import enum
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

View = TypeVar("View", bound=BaseModel)

#: Field types whose values a row already holds as they are (asyncpg's UUID is a uuid.UUID).
_PLAIN: frozenset[Any] = frozenset({uuid.UUID, str, int, bool, datetime})


def _field_kind(model: type[BaseModel], name: str, hint: Any) -> dict[Any, Any] | None:
    """``None`` for a field taken as it is; for an enumeration, its members by value (and None → None
    when the field is optional). Anything else is refused."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = list(typing.get_args(hint)) if union else [hint]
    optional = type(None) in args
    args = [a for a in args if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], enum.Enum):
        members: dict[Any, Any] = {m.value: m for m in args[0]}
        return members | ({None: None} if optional else {})
    if len(args) == 1 and (args[0] in _PLAIN or typing.get_origin(args[0]) is list):
        return None
    raise TypeError(f"{model.__name__}.{name}: {hint!r} is not a type RowViews can take from a row unchecked")


class RowViews(Generic[View]):
    """Views of one model from rows: ``views(rows, attachments)``."""

    def __init__(self, model: type[View]) -> None:
        decorators = model.__pydantic_decorators__
        if (model.model_config.get("extra") != "forbid" or model.model_computed_fields or decorators.validators
                or decorators.field_validators or decorators.root_validators or decorators.model_validators
                or decorators.field_serializers or decorators.model_serializers or model.__pydantic_post_init__
                or model.__private_attributes__):
            raise TypeError(f"{model.__name__} validates or serialises beyond its fields: not for RowViews")
        self._model = model
        self._fields = tuple(model.model_fields)
        self._all_set = frozenset(self._fields)
        self._template = dict.fromkeys(self._fields)  # the model's field order, copied per view
        self._enums = {name: kind for name, hint in typing.get_type_hints(model).items()
                       if name in model.model_fields and (kind := _field_kind(model, name, hint)) is not None}
        self._attached = "attachments" in self._all_set
        self._layouts: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _names(self, keys: Sequence[str]) -> tuple[str, ...]:
        """The field names of a row's columns, in the row's order: every field but ``attachments``
        must be a column; other columns (the statements' markers) must come after them."""
        key = tuple(keys)
        names = self._layouts.get(key)
        if names is None:
            wanted = set(self._fields) - ({"attachments"} if self._attached else set())
            names = tuple(k for k in key if k in wanted)
            if set(names) != wanted or key[:len(names)] != names:
                raise ValueError(f"{self._model.__name__}: columns {list(key)} do not make its fields "
                                 f"{sorted(wanted)} first")
            self._layouts[key] = names
        return names

    def views(self, rows: Sequence[Any], attachments: Mapping[Any, list[Any]]) -> list[View]:
        """One view per row (an ``asyncpg.Record``, or anything with ``keys()`` iterating its values
        in that order), with the row's attachments (``attachments[row id]``: their views, validated
        by the caller; else a new empty list)."""
        if not rows:
            return []
        names = self._names(rows[0].keys())
        template, enums, all_set, model = self._template, list(self._enums.items()), self._all_set, self._model
        attached, new, set_attr = self._attached, object.__new__, object.__setattr__
        made = []
        for row in rows:
            fields = template.copy()
            fields.update(zip(names, row, strict=False))  # the markers after the fields are left out
            if attached:
                fields["attachments"] = (attachments.get(fields["id"]) or []) if attachments else []
            try:
                for name, members in enums:
                    fields[name] = members[fields[name]]
            except KeyError as unknown:
                raise ValueError(f"{model.__name__}.{name}: {unknown} is not a value of the contract") from None
            view = new(model)
            set_attr(view, "__dict__", fields)
            set_attr(view, "__pydantic_fields_set__", all_set)
            set_attr(view, "__pydantic_extra__", None)
            set_attr(view, "__pydantic_private__", None)
            made.append(view)
        return made
