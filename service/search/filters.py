"""Filters of a search: which entries it may return, by their ``tags`` or any scalar field they declare.

    {"tags": ["factures", "compte"]}          an entry with any of these tags
    {"tags": {"all": ["factures", "api"]}}    an entry with all of them ({"any": [...]} is the first form)
    {"audience": "acheteur"}                  an entry whose field ``audience`` is this value
    {"audience": ["acheteur", "fournisseur"]} any of these values

Several fields: an entry must match each. The filter applies before ranking (the ``top_k`` results come from the
entries that match) and the answer decision is made among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..corpus import FaqEntry
from ..errors import ErrorCode, InvalidRequest

#: Most fields, and values of one field, a filter may name.
MAX_FIELDS, MAX_VALUES = 16, 64
Scalar = str | int | float | bool


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, code=ErrorCode.INVALID_FILTER, field="filter")


class EntryFilters:
    """The fields an FAQ's entries can be filtered on, and the entries a filter keeps.

    Args:
        entries: the entries in the engine's order.
    """

    def __init__(self, entries: Sequence[FaqEntry]):
        self.count = len(entries)
        self.tags = [frozenset(e.tags) for e in entries]
        self.fields: dict[str, list[Any]] = {}
        for position, entry in enumerate(entries):
            for name, value in entry.extra.items():
                if isinstance(value, Scalar) and value is not None:
                    self.fields.setdefault(name, [None] * self.count)[position] = value

    @property
    def names(self) -> list[str]:
        """The fields a filter may name: ``tags`` when an entry has tags, then each scalar field an entry has."""
        return (["tags"] if any(self.tags) else []) + sorted(self.fields)

    def keep(self, spec: Any, strict: bool = True) -> np.ndarray:
        """The positions of the entries ``spec`` keeps.

        Args:
            strict: a field no entry has is an error (else it keeps nothing: a search across FAQs, where another
                FAQ may have it).
        Raises:
            InvalidRequest: ``invalid_filter`` (not a filter as the module says), ``unknown_filter_field``.
        """
        if not isinstance(spec, dict) or not spec:
            raise _bad('\'filter\' must be an object of fields: {"tags": ["…"]}, {"audience": "…"}')
        if len(spec) > MAX_FIELDS:
            raise _bad(f"'filter' names {len(spec)} fields, more than {MAX_FIELDS}")
        kept = np.ones(self.count, dtype=bool)
        for name, value in spec.items():
            if name == "tags":
                kept &= self._tags(value)
            elif name in self.fields:
                wanted = self._values(name, value, scalar=True)
                kept &= np.array([v in wanted and v is not None for v in self.fields[name]], dtype=bool)
            else:
                self._values(name, value, scalar=True)  # its form is checked all the same
                if strict:
                    known = ", ".join(self.names) or "none: no entry has tags or a field of its own"
                    raise InvalidRequest(
                        f"no entry has the field {str(name)[:64]!r} to filter on; this FAQ's fields: {known}",
                        code=ErrorCode.UNKNOWN_FILTER_FIELD,
                        field="filter",
                    )
                kept[:] = False
        return np.flatnonzero(kept)

    def _tags(self, value: Any) -> np.ndarray:
        mode = "any"
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in ("any", "all"):
                raise _bad('\'filter.tags\' as an object is {"any": […]} or {"all": […]}')
            mode, value = next(iter(value.items()))
        wanted = self._values("tags", value, scalar=False)
        if mode == "all":
            return np.array([wanted <= tags for tags in self.tags], dtype=bool)
        return np.array([bool(wanted & tags) for tags in self.tags], dtype=bool)

    @staticmethod
    def _values(name: str, value: Any, scalar: bool) -> frozenset:
        values = value if isinstance(value, list) else [value] if scalar else None
        if values is None or not values or len(values) > MAX_VALUES:
            raise _bad(f"'filter.{str(name)[:64]}' must be a list of 1 to {MAX_VALUES} values")
        allowed = Scalar if scalar else str
        if not all(isinstance(v, allowed) for v in values):
            kind = "strings, numbers or true/false" if scalar else "strings"
            raise _bad(f"'filter.{str(name)[:64]}' values must be {kind}")
        return frozenset(values)


def json_schema(fields: dict[str, bool]) -> dict:
    """The JSON schema of a filter on these fields (name -> whether it is ``tags``): what the OpenAPI document says
    a filter of this service may hold."""
    strings = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_VALUES}
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    properties = {}
    for name, is_tags in fields.items():
        if is_tags:
            either = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
                      "properties": {"any": strings, "all": strings}}  # fmt: skip
            properties[name] = {"anyOf": [strings, either]}
        else:
            properties[name] = {"anyOf": [scalar, {"type": "array", "items": scalar, "minItems": 1,
                                                   "maxItems": MAX_VALUES}]}  # fmt: skip
    return {"type": "object", "properties": properties, "additionalProperties": False, "minProperties": 1,
            "maxProperties": MAX_FIELDS}  # fmt: skip
