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


#: Where an instance keeps its parts: ``BaseModel``'s slots, set through their descriptors as
#: ``model_construct`` sets them by name (``object.__setattr__``), without the look-up by name.
_SLOTS = {name: vars(BaseModel)[name].__set__ for name in
          ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")}


class RowViews(Generic[View]):
    """Views of one model from rows: ``views(rows, attachments)``.

    Per column layout (the names a statement's rows have) it makes, once, a function whose loop
    builds each view's ``__dict__`` as one dict display — ``{'id': row[0], 'author_role':
    enum_3[row[3]], …}``, the model's fields in its order, each from its column's position — the way
    ``dataclasses`` and ``attrs`` write their ``__init__``: for a thread of 200 replies ~0.27 ms →
    ~0.14 against a generic loop that copies a template dict, zips in the row and converts the
    enumerations one by one (bench/README.md, "Views from trusted rows"). The generated text holds
    nothing from a row: field names (identifiers of the contract) and column positions only."""

    def __init__(self, model: type[View]) -> None:
        decorators = model.__pydantic_decorators__
        if (model.model_config.get("extra") != "forbid" or model.model_computed_fields or decorators.validators
                or decorators.field_validators or decorators.root_validators or decorators.model_validators
                or decorators.field_serializers or decorators.model_serializers or model.__pydantic_post_init__
                or model.__private_attributes__):
            raise TypeError(f"{model.__name__} validates or serialises beyond its fields: not for RowViews")
        self._model = model
        self._fields = tuple(model.model_fields)
        if not all(name.isidentifier() for name in self._fields):
            raise TypeError(f"{model.__name__}: a field name that is not an identifier")
        self._enums = {name: kind for name, hint in typing.get_type_hints(model).items()
                       if name in model.model_fields and (kind := _field_kind(model, name, hint)) is not None}
        self._attached = "attachments" in self._fields
        if self._attached and "id" not in self._fields:
            raise TypeError(f"{model.__name__}: attachments are found by the view's id, and it has none")
        self._makers: dict[tuple[str, ...], Any] = {}

    def _maker(self, keys: Sequence[str]) -> Any:
        """The function making views from rows with these columns: every field but ``attachments``
        must be a column, once; other columns (the statements' markers) are left out."""
        key = tuple(keys)
        maker = self._makers.get(key)
        if maker is None:
            maker = self._makers[key] = self._generate(key)
        return maker

    def _generate(self, key: tuple[str, ...]) -> Any:
        wanted = set(self._fields) - ({"attachments"} if self._attached else set())
        at = {name: key.index(name) for name in wanted if key.count(name) == 1}
        if set(at) != wanted:
            raise ValueError(f"{self._model.__name__}: columns {list(key)} do not make its fields {sorted(wanted)}")
        scope: dict[str, Any] = {"new": object.__new__, "model": self._model, "all_set": frozenset(self._fields),
                                 **{f"set{i}": setter for i, setter in enumerate(_SLOTS.values())}}
        parts = []
        for name in self._fields:
            if name == "attachments" and self._attached:
                value = f"(attachments_of(row[{at['id']}]) or [])"  # a new list per view, as validation makes
            elif name in self._enums:
                scope[f"enum_{name}"] = self._enums[name]
                value = f"enum_{name}[row[{at[name]}]]"
            else:
                value = f"row[{at[name]}]"
            parts.append(f"{name!r}: {value}")
        source = (
            "def make(rows, attachments):\n"
            "    attachments_of = attachments.get\n"
            "    made = []\n"
            "    append = made.append\n"
            "    for row in rows:\n"
            "        view = new(model)\n"
            f"        set0(view, {{{', '.join(parts)}}})\n"
            "        set1(view, all_set)\n"
            "        set2(view, None)\n"
            "        set3(view, None)\n"
            "        append(view)\n"
            "    return made\n")
        exec(compile(source, f"<RowViews of {self._model.__name__}>", "exec"), scope)  # noqa: S102 - see the class
        return scope["make"]

    def views(self, rows: Sequence[Any], attachments: Mapping[Any, list[Any]]) -> list[View]:
        """One view per row (an ``asyncpg.Record``, or anything with ``keys()`` and its values by
        position), with the row's attachments (``attachments[row id]``: their views, validated by
        the caller; else a new empty list)."""
        if not rows:
            return []
        try:
            return self._maker(rows[0].keys())(rows, attachments)  # type: ignore[no-any-return]
        except KeyError:  # an enumeration's lookup: find which, for the message
            raise self._unknown(rows[0].keys(), rows) from None

    def _unknown(self, keys: Sequence[str], rows: Sequence[Any]) -> ValueError:
        at = {name: position for position, name in enumerate(keys)}
        for row in rows:
            for name, members in self._enums.items():
                if row[at[name]] not in members:
                    return ValueError(f"{self._model.__name__}.{name}: {row[at[name]]!r} is not a value of the contract")
        return ValueError(f"{self._model.__name__}: a value the contract does not know")
