"""Parse, validate and compile scan filters into fast predicates.

The grammar is the non-text part of the turbopuffer filter language, written as
decoded JSON:

* a leaf ``[attribute, operator, value]`` tests one attribute. The attribute
  ``id`` is the document id. Every other name is a top-level key of the
  document's attributes, so a dotted name is just a key.
* ``["And", [filter, ...]]`` and ``["Or", [filter, ...]]`` take a non-empty
  array, and ``["Not", filter]`` negates one filter. Nesting is limited to
  ``MAX_DEPTH`` levels.
* ``None`` in place of a filter matches every document.

Values follow JSON types. Numbers are ``int`` or ``float`` but never ``bool``,
and they compare numerically, so ``1`` equals ``1.0``. Values of different
types are never equal and never ordered, so ``"1"`` does not equal ``1`` and
``True`` does not equal ``1``. Arrays are Python lists and never equal a
scalar. A missing attribute behaves like ``null``, so ``Eq null`` matches it
and ``Lt`` never does. Every ``NotX`` operator is exactly ``not X``, so a
missing attribute matches ``NotEq 1``.

Glob patterns use ``fnmatch`` syntax over the whole string: ``*`` and ``?``
also match ``/`` and newlines, and ``[!...]`` negates a set. Regex patterns use
RE2 syntax, are searched unanchored, and match in time linear in the text.

``compile_filter`` validates the whole tree once and builds closures, so a
scan evaluates a document without re-parsing anything. Invalid input raises
``FilterError`` with the path of the offending expression, such as
``filters[1][0]``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import re2  # type: ignore[import-untyped]

__all__ = [
    "MAX_DEPTH",
    "OPERATORS",
    "And",
    "Filter",
    "FilterError",
    "Leaf",
    "Node",
    "Not",
    "Or",
    "Predicate",
    "compile_filter",
    "value_key",
]

MAX_DEPTH: Final = 64
ROOT_PATH: Final = "filters"

Predicate: TypeAlias = Callable[[str, Mapping[str, object]], bool]
ValueTest: TypeAlias = Callable[[object], bool]

OPERATORS: Final[tuple[str, ...]] = (
    "Eq",
    "NotEq",
    "In",
    "NotIn",
    "Lt",
    "Lte",
    "Gt",
    "Gte",
    "Contains",
    "NotContains",
    "ContainsAny",
    "NotContainsAny",
    "AnyLt",
    "AnyLte",
    "AnyGt",
    "AnyGte",
    "Glob",
    "NotGlob",
    "IGlob",
    "NotIGlob",
    "Regex",
)

_COMBINATORS: Final = frozenset({"And", "Or", "Not"})
_FULL_TEXT_OPERATORS: Final = frozenset(
    {"ContainsAllTokens", "ContainsTokenSequence", "ContainsAnyToken", "BM25"}
)
_NEGATIONS: Final[dict[str, str]] = {
    "NotEq": "Eq",
    "NotIn": "In",
    "NotContains": "Contains",
    "NotContainsAny": "ContainsAny",
    "NotGlob": "Glob",
    "NotIGlob": "IGlob",
}
_COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "Lt": operator.lt,
    "Lte": operator.le,
    "Gt": operator.gt,
    "Gte": operator.ge,
}

_FILTER_SHAPES: Final = (
    "[attribute, operator, value], "
    '["And", [filter, ...]], ["Or", [filter, ...]] or ["Not", filter]'
)
_SCALAR_SHAPE: Final = "a string, number, boolean or null"
_ORDERED_SHAPE: Final = "a number or a string"

# Tags of value_key(). Python's bool is a subclass of int, so a lookup by exact
# type is what keeps True apart from 1.
_NUMBER: Final = "n"
_STRING: Final = "s"
_BOOL: Final = "b"
_NULL: Final = "null"
_KIND_BY_TYPE: Final[dict[type, str]] = {
    str: _STRING,
    int: _NUMBER,
    float: _NUMBER,
    bool: _BOOL,
    type(None): _NULL,
}

_RENDER_MAX_CHARS: Final = 200
_RENDER_MAX_DEPTH: Final = 4
_RENDER_MAX_ITEMS: Final = 10


class FilterError(ValueError):
    """Invalid filter, with the path and the raw text of the offending expression.

    ``path`` starts at ``filters`` and indexes into the JSON arrays, for
    example ``filters[1][0]`` for the first child of a root ``And``.
    """

    def __init__(self, path: str, leaf: object, problem: str, expected: str) -> None:
        self.path = path
        self.leaf = leaf
        self.problem = problem
        self.expected = expected
        super().__init__(f"{path}: {problem} in {_render(leaf)}; expected {expected}")

    def __reduce__(self) -> tuple[type[FilterError], tuple[str, object, str, str]]:
        return type(self), (self.path, self.leaf, self.problem, self.expected)


@dataclass(frozen=True, slots=True)
class Leaf:
    """Test of one attribute.

    ``value`` is the filter's value as given, except that the array operators
    (``In``, ``NotIn``, ``ContainsAny``, ``NotContainsAny``) store a tuple of
    their distinct values in first-seen order.
    """

    attr: str
    op: str
    value: object


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node: TypeAlias = Leaf | And | Or | Not


@dataclass(frozen=True, slots=True, eq=False)
class Filter:
    """Compiled filter.

    ``matches(doc_id, attrs)`` returns whether a document passes. It is a
    stored closure rather than a method, so each call costs one Python call.
    ``node`` is ``None`` for the match-everything filter.
    """

    raw: object
    node: Node | None
    matches: Predicate = field(repr=False)


def compile_filter(raw: object) -> Filter:
    """Validate a decoded JSON filter and compile it into a ``Filter``.

    Raises FilterError for any invalid expression.
    """
    if raw is None:
        return Filter(raw=None, node=None, matches=_match_everything)
    node = _parse(raw, ROOT_PATH, 1)
    return Filter(raw=raw, node=node, matches=_build_predicate(node))


def value_key(value: object) -> tuple[str, object]:
    """Return the key under which filter-equal scalars collide.

    Numbers share the tag ``"n"``, so ``value_key(1) == value_key(1.0)``.
    Strings, booleans and ``None`` get the tags ``"s"``, ``"b"`` and ``"null"``,
    so ``True`` and ``1`` get different keys. Raises TypeError for anything that
    is not a JSON scalar.
    """
    kind = _scalar_kind(value)
    if kind is None:
        raise TypeError(
            f"value_key() expects a string, number, boolean or None, "
            f"got {type(value).__name__}"
        )
    return (kind, value)


def _scalar_kind(value: object) -> str | None:
    kind = _KIND_BY_TYPE.get(type(value))
    if kind is not None:
        return kind
    # Subclasses such as enum.IntEnum miss the exact-type lookup. bool cannot be
    # subclassed, so an int subclass is a number.
    if isinstance(value, str):
        return _STRING
    if isinstance(value, (int, float)):
        return _NUMBER
    return None


def _match_everything(doc_id: str, attrs: Mapping[str, object]) -> bool:
    return True


# Parsing and validation.


def _parse(raw: object, path: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(
            path,
            raw,
            f"filter nested deeper than {MAX_DEPTH} levels",
            f"at most {MAX_DEPTH} levels of And, Or and Not",
        )
    if not isinstance(raw, list):
        raise FilterError(path, raw, "invalid filter", f"an array: {_FILTER_SHAPES}")
    if len(raw) == 2:
        return _parse_combinator(raw, path, depth)
    if len(raw) == 3:
        return _parse_leaf(raw, path)
    raise FilterError(
        path, raw, f"invalid filter with {len(raw)} items", _FILTER_SHAPES
    )


def _parse_combinator(raw: list[object], path: str, depth: int) -> Node:
    name, argument = raw
    if name == "Not":
        return Not(_parse(argument, f"{path}[1]", depth + 1))
    if name not in ("And", "Or"):
        raise FilterError(path, raw, "invalid filter with 2 items", _FILTER_SHAPES)
    if not isinstance(argument, list) or not argument:
        raise FilterError(
            path,
            raw,
            f"invalid argument for {name}",
            "a non-empty array of filters as the second item",
        )
    children = tuple(
        _parse(child, f"{path}[1][{index}]", depth + 1)
        for index, child in enumerate(argument)
    )
    return And(children) if name == "And" else Or(children)


def _parse_leaf(raw: list[object], path: str) -> Leaf:
    attr, op, value = raw
    if isinstance(attr, str) and attr in _COMBINATORS and not isinstance(op, str):
        raise FilterError(
            path, raw, f"{attr} with 3 items", f'exactly 2 items: ["{attr}", ...]'
        )
    if not isinstance(attr, str) or not attr:
        raise FilterError(
            path, raw, "invalid attribute name", "a non-empty string as the first item"
        )
    if not isinstance(op, str):
        raise FilterError(
            path, raw, "invalid operator", "an operator name string as the second item"
        )
    if op not in _VALUE_CHECKS:
        raise _unknown_operator(path, raw, op)
    return Leaf(attr, op, _VALUE_CHECKS[op](path, raw, op, value))


def _unknown_operator(path: str, raw: list[object], op: str) -> FilterError:
    expected = "one of " + ", ".join(OPERATORS)
    quoted = json.dumps(op)
    if op in _FULL_TEXT_OPERATORS or "Token" in op:
        problem = f"full-text operator {quoted} is not supported by scans"
        return FilterError(path, raw, problem, expected)
    return FilterError(path, raw, f"unknown operator {quoted}", expected)


def _is_scalar(value: object) -> bool:
    # NaN and infinity are not JSON numbers. Large ints stay exact.
    if isinstance(value, float):
        return math.isfinite(value)
    return _scalar_kind(value) is not None


def _is_ordered(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return _scalar_kind(value) in (_NUMBER, _STRING)


def _check_scalar(path: str, raw: list[object], op: str, value: object) -> object:
    if not _is_scalar(value):
        raise FilterError(path, raw, f"invalid value for {op}", _SCALAR_SHAPE)
    return value


def _check_element(path: str, raw: list[object], op: str, value: object) -> object:
    if value is None or not _is_scalar(value):
        raise FilterError(
            path, raw, f"invalid value for {op}", "a string, number or boolean"
        )
    return value


def _check_scalar_array(
    path: str, raw: list[object], op: str, value: object
) -> tuple[object, ...]:
    expected = "an array of strings, numbers, booleans or nulls"
    if not isinstance(value, list):
        raise FilterError(path, raw, f"invalid value for {op}", expected)
    distinct: dict[tuple[str, object], object] = {}
    for index, item in enumerate(value):
        if not _is_scalar(item):
            problem = f"invalid item at index {index} of the {op} array"
            raise FilterError(path, raw, problem, expected)
        distinct.setdefault(value_key(item), item)
    return tuple(distinct.values())


def _check_ordered(path: str, raw: list[object], op: str, value: object) -> object:
    if not _is_ordered(value):
        raise FilterError(path, raw, f"invalid value for {op}", _ORDERED_SHAPE)
    return value


def _check_glob(path: str, raw: list[object], op: str, value: object) -> object:
    if not isinstance(value, str):
        raise FilterError(
            path, raw, f"invalid value for {op}", "a glob pattern string"
        )
    return value


def _check_regex(path: str, raw: list[object], op: str, value: object) -> object:
    expected = "a regular expression string in RE2 syntax"
    if not isinstance(value, str):
        raise FilterError(path, raw, f"invalid value for {op}", expected)
    try:
        re2.compile(value, _re2_options())
    except re2.error as error:
        problem = f"invalid regular expression: {_re2_error_text(error)}"
        expected += " (no lookaround or backreferences)"
        raise FilterError(path, raw, problem, expected) from None
    return value


ValueCheck: TypeAlias = Callable[[str, list[object], str, object], object]

_VALUE_CHECKS: Final[dict[str, ValueCheck]] = {
    "Eq": _check_scalar,
    "NotEq": _check_scalar,
    "In": _check_scalar_array,
    "NotIn": _check_scalar_array,
    "Lt": _check_ordered,
    "Lte": _check_ordered,
    "Gt": _check_ordered,
    "Gte": _check_ordered,
    "Contains": _check_element,
    "NotContains": _check_element,
    "ContainsAny": _check_scalar_array,
    "NotContainsAny": _check_scalar_array,
    "AnyLt": _check_ordered,
    "AnyLte": _check_ordered,
    "AnyGt": _check_ordered,
    "AnyGte": _check_ordered,
    "Glob": _check_glob,
    "NotGlob": _check_glob,
    "IGlob": _check_glob,
    "NotIGlob": _check_glob,
    "Regex": _check_regex,
}


# Rendering of offending expressions in error messages.


def _render(value: object) -> str:
    """Render a value as compact JSON, cut to a bounded depth and length."""
    text = _render_value(value, 0)
    if len(text) > _RENDER_MAX_CHARS:
        return text[: _RENDER_MAX_CHARS - 3] + "..."
    return text


def _render_value(value: object, depth: int) -> str:
    if isinstance(value, list):
        if depth >= _RENDER_MAX_DEPTH:
            return "[...]"
        items = [_render_value(item, depth + 1) for item in value[:_RENDER_MAX_ITEMS]]
        if len(value) > _RENDER_MAX_ITEMS:
            items.append("...")
        return "[" + ",".join(items) + "]"
    if isinstance(value, dict):
        if depth >= _RENDER_MAX_DEPTH:
            return "{...}"
        pairs = list(value.items())[:_RENDER_MAX_ITEMS]
        items = [
            json.dumps(str(key)) + ":" + _render_value(item, depth + 1)
            for key, item in pairs
        ]
        if len(value) > _RENDER_MAX_ITEMS:
            items.append("...")
        return "{" + ",".join(items) + "}"
    if isinstance(value, str):
        value = value[:_RENDER_MAX_CHARS]
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


# Compilation into closures.


def _build_predicate(node: Node) -> Predicate:
    if isinstance(node, Leaf):
        return _leaf_predicate(node)
    if isinstance(node, Not):
        return _negate(_build_predicate(node.child))
    children = tuple(_build_predicate(child) for child in node.children)
    if len(children) == 1:
        return children[0]
    if isinstance(node, And):
        return _match_all(children)
    return _match_any(children)


def _negate(predicate: Predicate) -> Predicate:
    def match_not(doc_id: str, attrs: Mapping[str, object]) -> bool:
        return not predicate(doc_id, attrs)

    return match_not


def _match_all(predicates: tuple[Predicate, ...]) -> Predicate:
    def match_and(doc_id: str, attrs: Mapping[str, object]) -> bool:
        for predicate in predicates:
            if not predicate(doc_id, attrs):
                return False
        return True

    return match_and


def _match_any(predicates: tuple[Predicate, ...]) -> Predicate:
    def match_or(doc_id: str, attrs: Mapping[str, object]) -> bool:
        for predicate in predicates:
            if predicate(doc_id, attrs):
                return True
        return False

    return match_or


def _leaf_predicate(leaf: Leaf) -> Predicate:
    """Build the predicate of a leaf from the value test of its positive operator.

    A missing attribute reaches the test as None, because every operator treats
    missing and null alike.
    """
    positive_op = _NEGATIONS.get(leaf.op, leaf.op)
    test = _VALUE_TESTS[positive_op](positive_op, leaf.value)
    negated = positive_op != leaf.op
    name = leaf.attr
    if name == "id":
        if negated:
            return lambda doc_id, attrs: not test(doc_id)
        return lambda doc_id, attrs: test(doc_id)
    if negated:
        return lambda doc_id, attrs: not test(attrs.get(name))
    return lambda doc_id, attrs: test(attrs.get(name))


def _as_tuple(value: object) -> tuple[object, ...]:
    """Return the values of an array operator, or a scalar as a 1-tuple."""
    return value if isinstance(value, tuple) else (value,)


def _never(value: object) -> bool:
    return False


def _is_none(value: object) -> bool:
    return value is None


def _equals_test(op: str, expected: object) -> ValueTest:
    if expected is None:
        return _is_none
    if isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, str):
        # Only a str compares equal to a str.
        return lambda value: value == expected
    # The expected value is a number. Python has True == 1, so bools are excluded.
    return lambda value: value == expected and value.__class__ is not bool


def _in_test(op: str, expected: object) -> ValueTest:
    values = _as_tuple(expected)
    if not values:
        return _never
    if len(values) == 1:
        return _equals_test(op, values[0])
    keys = frozenset(value_key(item) for item in values)

    def is_in(value: object) -> bool:
        kind = _KIND_BY_TYPE.get(value.__class__) or _scalar_kind(value)
        return kind is not None and (kind, value) in keys

    return is_in


def _contains_any_test(op: str, expected: object) -> ValueTest:
    values = _as_tuple(expected)
    if not values:
        return _never
    if all(isinstance(item, str) for item in values):
        strings = frozenset(item for item in values if isinstance(item, str))
        return _contains_any_string_test(strings)
    keys = frozenset(value_key(item) for item in values)

    def contains_any(value: object) -> bool:
        if not isinstance(value, list):
            return False
        for element in value:
            kind = _KIND_BY_TYPE.get(element.__class__) or _scalar_kind(element)
            if kind is not None and (kind, element) in keys:
                return True
        return False

    return contains_any


def _contains_any_string_test(strings: frozenset[str]) -> ValueTest:
    """Build a ContainsAny test for strings, which a set lookup checks in C."""

    def contains_any_string(value: object) -> bool:
        if not isinstance(value, list):
            return False
        try:
            # Only a str can equal a str, so other hashable elements miss.
            return not strings.isdisjoint(value)
        except TypeError:
            # An unhashable element, such as a nested array, never matches.
            return any(isinstance(item, str) and item in strings for item in value)

    return contains_any_string


def _compare_test(op: str, bound: object) -> ValueTest:
    compare = _COMPARISONS[op.removeprefix("Any")]
    kind = _scalar_kind(bound)

    def compares(value: object) -> bool:
        value_kind = _KIND_BY_TYPE.get(value.__class__) or _scalar_kind(value)
        return value_kind == kind and compare(value, bound)

    if not op.startswith("Any"):
        return compares

    def any_compares(value: object) -> bool:
        if not isinstance(value, list):
            return False
        for element in value:
            if compares(element):
                return True
        return False

    return any_compares


def _glob_test(op: str, pattern: object) -> ValueTest:
    flags = re.IGNORECASE if op == "IGlob" else 0
    # fnmatch.translate anchors both ends and, since Python 3.11, uses atomic
    # groups for "*", so matching does not backtrack exponentially.
    match = re.compile(fnmatch.translate(str(pattern)), flags).match

    def matches_glob(value: object) -> bool:
        return isinstance(value, str) and match(value) is not None

    return matches_glob


def _regex_test(op: str, pattern: object) -> ValueTest:
    search = _re2_search(str(pattern))

    def matches_regex(value: object) -> bool:
        # surrogatepass keeps lone surrogates, which JSON allows, from raising.
        return isinstance(value, str) and search(
            value.encode("utf-8", "surrogatepass")
        )

    return matches_regex


_VALUE_TESTS: Final[dict[str, Callable[[str, object], ValueTest]]] = {
    "Eq": _equals_test,
    "In": _in_test,
    "Lt": _compare_test,
    "Lte": _compare_test,
    "Gt": _compare_test,
    "Gte": _compare_test,
    "Contains": _contains_any_test,
    "ContainsAny": _contains_any_test,
    "AnyLt": _compare_test,
    "AnyLte": _compare_test,
    "AnyGt": _compare_test,
    "AnyGte": _compare_test,
    "Glob": _glob_test,
    "IGlob": _glob_test,
    "Regex": _regex_test,
}


# RE2 matching.


def _re2_options() -> re2.Options:
    options = re2.Options()
    # Invalid patterns become FilterError, so RE2 need not also log them.
    options.log_errors = False
    return options


def _re2_error_text(error: re2.error) -> str:
    detail = error.args[0] if error.args else error
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)


def _re2_search(pattern: str) -> Callable[[bytes], bool]:
    """Build an unanchored RE2 search over UTF-8 text.

    It uses an RE2::Set of one pattern, which runs only the DFA. re2's
    ``search`` also computes match positions in Python. In a timeit run on a
    12-character string (Python 3.11, google-re2 1.1.20251105), Set.Match took
    0.7 us and search took 4.5 us.
    """
    search_set = _compile_search_set(pattern)
    if search_set is not None:
        match_set = search_set.Match
        return lambda text: match_set(text) is not None
    regex = re2.compile(pattern, _re2_options())
    return lambda text: regex.search(text) is not None


def _compile_search_set(pattern: str) -> re2.Set | None:
    """Compile a one-pattern RE2::Set, or return None if RE2 cannot run it.

    RE2::Set.Match reports "no match" when its DFA runs out of memory. In RE2's
    dfa.cc that happens only at DFA start-up, which requires room for 20 states,
    because a many-match search resets its state cache instead of giving up.
    The probe set adds the empty pattern, which matches every text, so a probe
    without a match means the DFA cannot start. The real set has one pattern
    fewer, so its DFA needs no more memory than the probe's. Set.Compile
    also fails on some patterns that re2.compile accepts, such as ``\\pL{300}``.
    """
    options = _re2_options()
    try:
        probe = re2.Set.SearchSet(options)
        probe.Add(pattern)
        probe.Add("")
        probe.Compile()
        if probe.Match(b"") is None:
            return None
        search_set = re2.Set.SearchSet(options)
        search_set.Add(pattern)
        search_set.Compile()
    except re2.error:
        return None
    return search_set
