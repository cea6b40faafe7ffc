"""Unit tests for schemas.filters: matching, validation errors and value_key."""

from __future__ import annotations

import operator
import os
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from schemas.filters import (
    MAX_DEPTH,
    And,
    FilterError,
    Leaf,
    Not,
    Or,
    compile_filter,
    value_key,
)

DOC_ID = "doc-1"


def case(
    name: str,
    raw: object,
    attrs: dict[str, object],
    expected: bool,
    doc_id: str = DOC_ID,
) -> object:
    return pytest.param(raw, doc_id, attrs, expected, id=name)


MATCH_CASES = [
    # Eq
    case("eq-int", ["a", "Eq", 1], {"a": 1}, True),
    case("eq-int-float", ["a", "Eq", 1], {"a": 1.0}, True),
    case("eq-float-int", ["a", "Eq", 1.0], {"a": 1}, True),
    case("eq-int-other", ["a", "Eq", 1], {"a": 2}, False),
    case("eq-int-true", ["a", "Eq", 1], {"a": True}, False),
    case("eq-true-int", ["a", "Eq", True], {"a": 1}, False),
    case("eq-true", ["a", "Eq", True], {"a": True}, True),
    case("eq-false-zero", ["a", "Eq", False], {"a": 0}, False),
    case("eq-zero-false", ["a", "Eq", 0], {"a": False}, False),
    case("eq-false", ["a", "Eq", False], {"a": False}, True),
    case("eq-str-num", ["a", "Eq", "1"], {"a": 1}, False),
    case("eq-num-str", ["a", "Eq", 1], {"a": "1"}, False),
    case("eq-str", ["a", "Eq", "x"], {"a": "x"}, True),
    case("eq-str-case", ["a", "Eq", "x"], {"a": "X"}, False),
    case("eq-missing", ["a", "Eq", 1], {}, False),
    case("eq-null-attr", ["a", "Eq", 1], {"a": None}, False),
    case("eq-array-num", ["a", "Eq", 1], {"a": [1]}, False),
    case("eq-array-str", ["a", "Eq", "x"], {"a": ["x"]}, False),
    case("eq-dict", ["a", "Eq", 1], {"a": {"a": 1}}, False),
    case("eq-bigint-exact", ["a", "Eq", 2**53 + 1], {"a": float(2**53)}, False),
    case("eq-null-missing", ["a", "Eq", None], {}, True),
    case("eq-null-null", ["a", "Eq", None], {"a": None}, True),
    case("eq-null-zero", ["a", "Eq", None], {"a": 0}, False),
    case("eq-null-empty-str", ["a", "Eq", None], {"a": ""}, False),
    case("eq-null-false", ["a", "Eq", None], {"a": False}, False),
    case("eq-null-array", ["a", "Eq", None], {"a": []}, False),
    case("eq-dotted-key", ["a.b", "Eq", 1], {"a.b": 1}, True),
    case("eq-dotted-nested", ["a.b", "Eq", 1], {"a": {"b": 1}}, False),
    # NotEq
    case("noteq-missing", ["a", "NotEq", 1], {}, True),
    case("noteq-null", ["a", "NotEq", 1], {"a": None}, True),
    case("noteq-float", ["a", "NotEq", 1], {"a": 1.0}, False),
    case("noteq-true", ["a", "NotEq", 1], {"a": True}, True),
    case("noteq-str", ["a", "NotEq", 1], {"a": "1"}, True),
    case("noteq-array", ["a", "NotEq", 1], {"a": [1]}, True),
    case("noteq-null-missing", ["a", "NotEq", None], {}, False),
    case("noteq-null-null", ["a", "NotEq", None], {"a": None}, False),
    case("noteq-null-zero", ["a", "NotEq", None], {"a": 0}, True),
    case("noteq-null-false", ["a", "NotEq", None], {"a": False}, True),
    # In
    case("in-float", ["a", "In", [1, "x", None]], {"a": 1.0}, True),
    case("in-str", ["a", "In", [1, "x", None]], {"a": "x"}, True),
    case("in-missing-null", ["a", "In", [1, "x", None]], {}, True),
    case("in-null-null", ["a", "In", [1, "x", None]], {"a": None}, True),
    case("in-true", ["a", "In", [1, "x", None]], {"a": True}, False),
    case("in-str-num", ["a", "In", [1, "x", None]], {"a": "1"}, False),
    case("in-array", ["a", "In", [1, "x", None]], {"a": [1]}, False),
    case("in-dict", ["a", "In", [1, "x"]], {"a": {"x": 1}}, False),
    case("in-missing", ["a", "In", [1, "x"]], {}, False),
    case("in-empty", ["a", "In", []], {"a": 1}, False),
    case("in-empty-missing", ["a", "In", []], {}, False),
    case("in-bool-int", ["a", "In", [True]], {"a": 1}, False),
    case("in-bool", ["a", "In", [True]], {"a": True}, True),
    case("in-int-bool", ["a", "In", [1]], {"a": True}, False),
    case("in-int-bool-many", ["a", "In", [1, 2]], {"a": True}, False),
    case("in-false-zero-many", ["a", "In", [False, "x"]], {"a": 0}, False),
    # NotIn
    case("notin-missing", ["a", "NotIn", [1, "x"]], {}, True),
    case("notin-hit", ["a", "NotIn", [1, "x"]], {"a": 1}, False),
    case("notin-true", ["a", "NotIn", [1, "x"]], {"a": True}, True),
    case("notin-other", ["a", "NotIn", [1, "x"]], {"a": "y"}, True),
    case("notin-null-missing", ["a", "NotIn", [None]], {}, False),
    case("notin-null-zero", ["a", "NotIn", [None]], {"a": 0}, True),
    case("notin-empty", ["a", "NotIn", []], {}, True),
    # Lt, Lte, Gt, Gte
    case("lt-int", ["a", "Lt", 5], {"a": 4}, True),
    case("lt-equal", ["a", "Lt", 5], {"a": 5}, False),
    case("lt-float", ["a", "Lt", 5], {"a": 4.5}, True),
    case("lt-float-bound", ["a", "Lt", 5.5], {"a": 5}, True),
    case("lt-str-attr", ["a", "Lt", 5], {"a": "4"}, False),
    case("lt-bool-attr", ["a", "Lt", 5], {"a": True}, False),
    case("lt-missing", ["a", "Lt", 5], {}, False),
    case("lt-null", ["a", "Lt", 5], {"a": None}, False),
    case("lt-array", ["a", "Lt", 5], {"a": [1]}, False),
    case("lt-nan", ["a", "Lt", 5], {"a": float("nan")}, False),
    case("lte-float", ["a", "Lte", 5], {"a": 5.0}, True),
    case("lte-above", ["a", "Lte", 5], {"a": 6}, False),
    case("gt-float", ["a", "Gt", 5], {"a": 5.5}, True),
    case("gt-equal", ["a", "Gt", 5], {"a": 5}, False),
    case("gte-equal", ["a", "Gte", 5], {"a": 5}, True),
    case("gte-below", ["a", "Gte", 5], {"a": 4}, False),
    case("gte-nan", ["a", "Gte", 5], {"a": float("nan")}, False),
    case("lt-str", ["a", "Lt", "b"], {"a": "a"}, True),
    case("lt-str-equal", ["a", "Lt", "b"], {"a": "b"}, False),
    case("lt-str-upper", ["a", "Lt", "b"], {"a": "B"}, True),
    case("lt-str-num-attr", ["a", "Lt", "b"], {"a": 1}, False),
    case("gte-str-prefix", ["a", "Gte", "b"], {"a": "ba"}, True),
    case("gt-str-missing", ["a", "Gt", ""], {}, False),
    # Contains, NotContains
    case("contains-str", ["t", "Contains", "x"], {"t": ["x", "y"]}, True),
    case("contains-str-miss", ["t", "Contains", "x"], {"t": ["y"]}, False),
    case("contains-scalar-attr", ["t", "Contains", "x"], {"t": "x"}, False),
    case("contains-missing", ["t", "Contains", "x"], {}, False),
    case("contains-null", ["t", "Contains", "x"], {"t": None}, False),
    case("contains-empty", ["t", "Contains", "x"], {"t": []}, False),
    case("contains-nested", ["t", "Contains", "x"], {"t": [["x"], {"x": 1}]}, False),
    case("contains-nested-hit", ["t", "Contains", "x"], {"t": [["x"], "x"]}, True),
    case("contains-int-float", ["t", "Contains", 1], {"t": [1.0]}, True),
    case("contains-int-true", ["t", "Contains", 1], {"t": [True]}, False),
    case("contains-int-str", ["t", "Contains", 1], {"t": ["1"]}, False),
    case("contains-int-nested", ["t", "Contains", 1], {"t": [[1]]}, False),
    case("contains-true-int", ["t", "Contains", True], {"t": [1]}, False),
    case("contains-true", ["t", "Contains", True], {"t": [True]}, True),
    case("notcontains-hit", ["t", "NotContains", "x"], {"t": ["x"]}, False),
    case("notcontains-miss", ["t", "NotContains", "x"], {"t": ["y"]}, True),
    case("notcontains-missing", ["t", "NotContains", "x"], {}, True),
    case("notcontains-scalar", ["t", "NotContains", "x"], {"t": "x"}, True),
    # ContainsAny, NotContainsAny
    case("cany-float", ["t", "ContainsAny", ["x", 2]], {"t": ["y", 2.0]}, True),
    case("cany-miss", ["t", "ContainsAny", ["x", 2]], {"t": ["y"]}, False),
    case("cany-missing", ["t", "ContainsAny", ["x", 2]], {}, False),
    case("cany-types", ["t", "ContainsAny", ["x", 1]], {"t": [True, "X"]}, False),
    case("cany-scalar", ["t", "ContainsAny", ["x", 2]], {"t": "x"}, False),
    case("cany-empty", ["t", "ContainsAny", []], {"t": ["x"]}, False),
    case("cany-null", ["t", "ContainsAny", [None]], {"t": [None]}, True),
    case("cany-null-empty", ["t", "ContainsAny", [None]], {"t": []}, False),
    case("cany-null-missing", ["t", "ContainsAny", [None]], {}, False),
    case("cany-str-dict", ["t", "ContainsAny", ["x", "y"]], {"t": [{}, "y"]}, True),
    case("cany-str-int", ["t", "ContainsAny", ["x", "y"]], {"t": [1, True]}, False),
    case("notcany-hit", ["t", "NotContainsAny", ["x", "y"]], {"t": ["x"]}, False),
    case("notcany-missing", ["t", "NotContainsAny", ["x", "y"]], {}, True),
    case("notcany-miss", ["t", "NotContainsAny", ["x", "y"]], {"t": ["z"]}, True),
    # AnyLt, AnyLte, AnyGt, AnyGte
    case("anylt-hit", ["s", "AnyLt", 3], {"s": [5, 2]}, True),
    case("anylt-equal", ["s", "AnyLt", 3], {"s": [5, 3]}, False),
    case("anylt-scalar", ["s", "AnyLt", 3], {"s": 1}, False),
    case("anylt-missing", ["s", "AnyLt", 3], {}, False),
    case("anylt-bool", ["s", "AnyLt", 3], {"s": [True]}, False),
    case("anylt-str", ["s", "AnyLt", 3], {"s": ["1"]}, False),
    case("anylt-empty", ["s", "AnyLt", 3], {"s": []}, False),
    case("anylte-float", ["s", "AnyLte", 3], {"s": [3.0]}, True),
    case("anygt-hit", ["s", "AnyGt", 3], {"s": [1, 4]}, True),
    case("anygt-null", ["s", "AnyGt", 3], {"s": [None, 1]}, False),
    case("anygte-str", ["s", "AnyGte", "m"], {"s": ["a", "m"]}, True),
    case("anygte-str-miss", ["s", "AnyGte", "m"], {"s": ["a", 99]}, False),
    # Glob, IGlob, NotGlob, NotIGlob
    case("glob-star", ["p", "Glob", "a*c"], {"p": "abc"}, True),
    case("glob-star-empty", ["p", "Glob", "a*c"], {"p": "ac"}, True),
    case("glob-whole", ["p", "Glob", "a*c"], {"p": "abcd"}, False),
    case("glob-case", ["p", "Glob", "a*c"], {"p": "ABC"}, False),
    case("glob-missing", ["p", "Glob", "a*c"], {}, False),
    case("glob-num", ["p", "Glob", "1*"], {"p": 12}, False),
    case("glob-array", ["p", "Glob", "a*c"], {"p": ["abc"]}, False),
    case("glob-question", ["p", "Glob", "a?c"], {"p": "abc"}, True),
    case("glob-question-empty", ["p", "Glob", "a?c"], {"p": "ac"}, False),
    case("glob-set", ["p", "Glob", "[ab]x"], {"p": "bx"}, True),
    case("glob-set-miss", ["p", "Glob", "[ab]x"], {"p": "cx"}, False),
    case("glob-negset", ["p", "Glob", "[!ab]x"], {"p": "cx"}, True),
    case("glob-negset-miss", ["p", "Glob", "[!ab]x"], {"p": "ax"}, False),
    case("glob-dot-literal", ["p", "Glob", "a.c"], {"p": "abc"}, False),
    case("glob-dot", ["p", "Glob", "a.c"], {"p": "a.c"}, True),
    case("glob-star-all", ["p", "Glob", "*"], {"p": ""}, True),
    case("glob-newline", ["p", "Glob", "*"], {"p": "a\nb"}, True),
    case("glob-slash", ["p", "Glob", "a/*"], {"p": "a/b/c"}, True),
    case("iglob-hit", ["p", "IGlob", "A*C"], {"p": "abc"}, True),
    case("iglob-miss", ["p", "IGlob", "A*C"], {"p": "abd"}, False),
    case("notglob-missing", ["p", "NotGlob", "a*"], {}, True),
    case("notglob-hit", ["p", "NotGlob", "a*"], {"p": "ab"}, False),
    case("notglob-miss", ["p", "NotGlob", "a*"], {"p": "b"}, True),
    case("notglob-num", ["p", "NotGlob", "a*"], {"p": 1}, True),
    case("notiglob-hit", ["p", "NotIGlob", "A*"], {"p": "ab"}, False),
    case("notiglob-miss", ["p", "NotIGlob", "A*"], {"p": "b"}, True),
    case("notiglob-missing", ["p", "NotIGlob", "A*"], {}, True),
    # Regex
    case("regex-unanchored", ["p", "Regex", "b+"], {"p": "abbc"}, True),
    case("regex-miss", ["p", "Regex", "b+"], {"p": "ac"}, False),
    case("regex-missing", ["p", "Regex", "b+"], {}, False),
    case("regex-num", ["p", "Regex", "1"], {"p": 1}, False),
    case("regex-array", ["p", "Regex", "b"], {"p": ["b"]}, False),
    case("regex-anchors", ["p", "Regex", "^a.c$"], {"p": "abc"}, True),
    case("regex-anchors-miss", ["p", "Regex", "^a.c$"], {"p": "xabc"}, False),
    case("regex-flag", ["p", "Regex", "(?i)ABC"], {"p": "xabcx"}, True),
    case("regex-case", ["p", "Regex", "ABC"], {"p": "abc"}, False),
    case("regex-unicode", ["p", "Regex", "é+$"], {"p": "café"}, True),
    case("regex-class", ["p", "Regex", r"\d{3}"], {"p": "a123"}, True),
    case("regex-empty", ["p", "Regex", ""], {"p": ""}, True),
    case("regex-surrogate", ["p", "Regex", "a"], {"p": "\ud800a"}, True),
    case("regex-large", ["p", "Regex", r"\pL{300}"], {"p": "é" * 300}, True),
    case("regex-large-miss", ["p", "Regex", r"\pL{300}"], {"p": "é" * 299}, False),
    # id
    case("id-eq", ["id", "Eq", "doc-1"], {}, True),
    case("id-eq-other", ["id", "Eq", "doc-1"], {}, False, doc_id="doc-2"),
    case("id-eq-num", ["id", "Eq", 1], {}, False, doc_id="1"),
    case("id-eq-null", ["id", "Eq", None], {}, False),
    case("id-noteq-null", ["id", "NotEq", None], {}, True),
    case("id-not-attr", ["id", "Eq", "x"], {"id": "x"}, False),
    case("id-in", ["id", "In", ["doc-1", "doc-9"]], {}, True),
    case("id-notin", ["id", "NotIn", ["doc-1"]], {}, False),
    case("id-lt", ["id", "Lt", "doc-2"], {}, True),
    case("id-gt-num", ["id", "Gt", 0], {}, False),
    case("id-glob", ["id", "Glob", "doc-*"], {}, True),
    case("id-regex", ["id", "Regex", "1$"], {}, True),
    case("id-contains", ["id", "Contains", "d"], {}, False),
    # combinators
    case("and-both", ["And", [["a", "Eq", 1], ["b", "Eq", 2]]], {"a": 1, "b": 2}, True),
    case("and-one", ["And", [["a", "Eq", 1], ["b", "Eq", 2]]], {"a": 1}, False),
    case("and-single", ["And", [["a", "Eq", 1]]], {"a": 1}, True),
    case("or-second", ["Or", [["a", "Eq", 1], ["b", "Eq", 2]]], {"b": 2}, True),
    case("or-none", ["Or", [["a", "Eq", 1], ["b", "Eq", 2]]], {}, False),
    case("or-single", ["Or", [["a", "Eq", 1]]], {"a": 2}, False),
    case("not-missing", ["Not", ["a", "Eq", 1]], {}, True),
    case("not-hit", ["Not", ["a", "Eq", 1]], {"a": 1}, False),
    case("not-not", ["Not", ["Not", ["a", "Eq", 1]]], {"a": 1}, True),
    case(
        "nested-hit",
        [
            "And",
            [
                ["Or", [["a", "In", [1, 2]], ["b", "Glob", "x*"]]],
                ["Not", ["c", "Eq", None]],
            ],
        ],
        {"b": "xy", "c": 0},
        True,
    ),
    case(
        "nested-null",
        [
            "And",
            [
                ["Or", [["a", "In", [1, 2]], ["b", "Glob", "x*"]]],
                ["Not", ["c", "Eq", None]],
            ],
        ],
        {"a": 2, "c": None},
        False,
    ),
    case(
        "nested-id",
        ["Or", [["id", "Eq", "doc-9"], ["And", [["id", "Glob", "doc-*"]]]]],
        {},
        True,
    ),
    case("attr-named-and", ["And", "Eq", 1], {"And": 1}, True),
    case("none-filter", None, {}, True),
]


@pytest.mark.parametrize(("raw", "doc_id", "attrs", "expected"), MATCH_CASES)
def test_matches(
    raw: object, doc_id: str, attrs: dict[str, object], expected: bool
) -> None:
    assert compile_filter(raw).matches(doc_id, attrs) is expected


def deep_not(levels: int) -> object:
    raw: object = ["a", "Eq", 1]
    for _ in range(levels):
        raw = ["Not", raw]
    return raw


def invalid(name: str, raw: object, path: str, message: str) -> object:
    return pytest.param(raw, path, message, id=name)


INVALID_CASES = [
    # shapes
    invalid("string", "a", "filters", 'invalid filter in "a"; expected an array'),
    invalid("number", 5, "filters", "invalid filter in 5"),
    invalid("dict", {"a": 1}, "filters", 'invalid filter in {"a":1}'),
    invalid("tuple", ("a", "Eq", 1), "filters", "invalid filter"),
    invalid("empty", [], "filters", "invalid filter with 0 items in []"),
    invalid("one-item", ["a"], "filters", "invalid filter with 1 items"),
    invalid("four-items", ["a", "Eq", 1, 2], "filters", "with 4 items"),
    invalid("attr-number", [1, "Eq", 1], "filters", "invalid attribute name"),
    invalid("attr-empty", ["", "Eq", 1], "filters", "non-empty string"),
    invalid("attr-list", [["a"], "Eq", 1], "filters", "invalid attribute name"),
    invalid("op-number", ["a", 1, 1], "filters", "invalid operator in"),
    invalid("op-null", ["a", None, 1], "filters", "operator name string"),
    # operators
    invalid("op-unknown", ["a", "Equals", 1], "filters", 'unknown operator "Equals"'),
    invalid("op-lowercase", ["a", "eq", 1], "filters", "expected one of Eq, NotEq"),
    invalid("op-combinator", ["a", "And", []], "filters", 'unknown operator "And"'),
    invalid(
        "op-all-tokens",
        ["a", "ContainsAllTokens", "x"],
        "filters",
        "full-text operator",
    ),
    invalid(
        "op-sequence",
        ["a", "ContainsTokenSequence", "x y"],
        "filters",
        "not supported by scans",
    ),
    invalid("op-any-token", ["a", "ContainsAnyToken", "x"], "filters", "full-text"),
    invalid("op-bm25", ["a", "BM25", "x"], "filters", "full-text"),
    invalid("op-token", ["a", "MyTokenOp", "x"], "filters", "full-text"),
    # combinators
    invalid("and-empty", ["And", []], "filters", "invalid argument for And"),
    invalid("or-empty", ["Or", []], "filters", "non-empty array of filters"),
    invalid("and-string", ["And", "x"], "filters", "invalid argument for And"),
    invalid("or-dict", ["Or", {}], "filters", "invalid argument for Or"),
    invalid("and-leaf", ["And", ["a", "Eq", 1]], "filters[1][0]", 'filter in "a"'),
    invalid("not-string", ["Not", "x"], "filters[1]", "invalid filter"),
    invalid("not-one", ["Not"], "filters", "with 1 items"),
    invalid("not-three", ["Not", ["a", "Eq", 1], 2], "filters", "Not with 3 items"),
    invalid("and-three", ["And", [["a", "Eq", 1]], 2], "filters", "exactly 2 items"),
    invalid("xor", ["Xor", [["a", "Eq", 1]]], "filters", 'or ["Not", filter]'),
    invalid(
        "two-leaves",
        [["a", "Eq", 1], ["b", "Eq", 2]],
        "filters",
        "invalid filter with 2 items",
    ),
    invalid(
        "and-child",
        ["And", [["a", "Eq", 1], ["b", "Equals", 2]]],
        "filters[1][1]",
        'unknown operator "Equals"',
    ),
    invalid(
        "or-not-child",
        ["Or", [["a", "Eq", 1], ["Not", ["b", "Lt", None]]]],
        "filters[1][1][1]",
        "invalid value for Lt",
    ),
    invalid(
        "depth",
        deep_not(MAX_DEPTH),
        "filters" + "[1]" * MAX_DEPTH,
        "nested deeper than 64 levels",
    ),
    invalid("depth-huge", deep_not(10_000), "filters" + "[1]" * MAX_DEPTH, "deeper"),
    # values
    invalid("eq-list", ["a", "Eq", [1]], "filters", "invalid value for Eq"),
    invalid("eq-dict", ["a", "Eq", {"x": 1}], "filters", "string, number, boolean"),
    invalid("eq-nan", ["a", "Eq", float("nan")], "filters", "invalid value for Eq"),
    invalid("eq-inf", ["a", "Eq", float("inf")], "filters", "invalid value for Eq"),
    invalid("eq-bytes", ["a", "Eq", b"x"], "filters", "invalid value for Eq"),
    invalid("noteq-list", ["a", "NotEq", []], "filters", "invalid value for NotEq"),
    invalid("in-string", ["a", "In", "x"], "filters", "invalid value for In"),
    invalid("in-nested", ["a", "In", [1, [2]]], "filters", "index 1 of the In"),
    invalid("in-dict", ["a", "In", [{"a": 1}]], "filters", "index 0 of the In"),
    invalid("notin-number", ["a", "NotIn", 1], "filters", "an array of strings"),
    invalid("lt-bool", ["a", "Lt", True], "filters", "invalid value for Lt"),
    invalid("lt-null", ["a", "Lt", None], "filters", "a number or a string"),
    invalid("lte-list", ["a", "Lte", [1]], "filters", "invalid value for Lte"),
    invalid("gt-nan", ["a", "Gt", float("nan")], "filters", "invalid value for Gt"),
    invalid("gte-dict", ["a", "Gte", {"a": 1}], "filters", "invalid value for Gte"),
    invalid("contains-null", ["a", "Contains", None], "filters", "number or boolean"),
    invalid("contains-list", ["a", "Contains", [1]], "filters", "value for Contains"),
    invalid("notcontains-dict", ["a", "NotContains", {}], "filters", "NotContains"),
    invalid("cany-string", ["a", "ContainsAny", "x"], "filters", "for ContainsAny"),
    invalid("cany-nested", ["a", "ContainsAny", [[1]]], "filters", "index 0"),
    invalid("notcany-null", ["a", "NotContainsAny", None], "filters", "an array"),
    invalid("anylt-null", ["a", "AnyLt", None], "filters", "invalid value for AnyLt"),
    invalid("anygt-bool", ["a", "AnyGt", True], "filters", "invalid value for AnyGt"),
    invalid("anylte-list", ["a", "AnyLte", [1]], "filters", "value for AnyLte"),
    invalid("anygte-null", ["a", "AnyGte", None], "filters", "value for AnyGte"),
    invalid("glob-number", ["a", "Glob", 1], "filters", "a glob pattern string"),
    invalid("iglob-null", ["a", "IGlob", None], "filters", "invalid value for IGlob"),
    invalid("notglob-list", ["a", "NotGlob", ["a"]], "filters", "value for NotGlob"),
    invalid("notiglob-num", ["a", "NotIGlob", 1], "filters", "value for NotIGlob"),
    invalid("regex-number", ["a", "Regex", 1], "filters", "regular expression string"),
    invalid("regex-paren", ["a", "Regex", "("], "filters", "missing ): ("),
    invalid("regex-lookahead", ["a", "Regex", "(?=a)"], "filters", "perl operator"),
    invalid("regex-backref", ["a", "Regex", r"(a)\1"], "filters", "invalid escape"),
]


@pytest.mark.parametrize(("raw", "path", "message"), INVALID_CASES)
def test_invalid(raw: object, path: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(raw)
    assert caught.value.path == path
    assert message in str(caught.value)
    assert str(caught.value).startswith(path + ": ")


def test_invalid_message_exact() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(["Not", ["a", "Equals", 1]])
    assert str(caught.value) == (
        'filters[1]: unknown operator "Equals" in ["a","Equals",1]; expected one '
        "of Eq, NotEq, In, NotIn, Lt, Lte, Gt, Gte, Contains, NotContains, "
        "ContainsAny, NotContainsAny, AnyLt, AnyLte, AnyGt, AnyGte, Glob, NotGlob, "
        "IGlob, NotIGlob, Regex"
    )


def test_invalid_leaf_attribute() -> None:
    leaf = ["b", "Lt", None]
    with pytest.raises(FilterError) as caught:
        compile_filter(["And", [["a", "Eq", 1], leaf]])
    assert caught.value.leaf is leaf
    assert isinstance(caught.value, ValueError)


def test_invalid_message_bounded() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(["a", "Eq", [list(range(1000)), "x" * 10_000]])
    assert len(str(caught.value)) < 400
    assert '["a","Eq",[[0,1,2,3,4,5,6,7,8,9,...],' in str(caught.value)


def test_invalid_deep_value() -> None:
    value: object = 1
    for _ in range(10_000):
        value = [value]
    with pytest.raises(FilterError) as caught:
        compile_filter(["a", "Eq", value])
    assert caught.value.path == "filters"
    assert '["a","Eq",[[[[...]]]]]' in str(caught.value)


def test_invalid_pickles() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(["a", "Equals", 1])
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.path == "filters"
    assert copy.leaf == ["a", "Equals", 1]
    assert str(copy) == str(caught.value)


def test_depth_limit_allowed() -> None:
    raw = deep_not(MAX_DEPTH - 1)
    compiled = compile_filter(raw)
    assert compiled.matches(DOC_ID, {"a": 1}) is False
    assert compiled.matches(DOC_ID, {"a": 2}) is True


def test_node_leaf() -> None:
    assert compile_filter(["a", "Eq", 1]).node == Leaf("a", "Eq", 1)
    assert compile_filter(["id", "Regex", "x"]).node == Leaf("id", "Regex", "x")


def test_node_in_distinct() -> None:
    node = compile_filter(["a", "In", [1, 1.0, "x", True, 1, None, "x"]]).node
    assert node == Leaf("a", "In", (1, "x", True, None))


def test_node_contains_any_distinct() -> None:
    node = compile_filter(["a", "ContainsAny", ["x", "x", 0, False]]).node
    assert node == Leaf("a", "ContainsAny", ("x", 0, False))


def test_node_combinators() -> None:
    raw = ["Or", [["Not", ["a", "Eq", 1]], ["And", [["b", "Lt", 2]]]]]
    expected = Or((Not(Leaf("a", "Eq", 1)), And((Leaf("b", "Lt", 2),))))
    assert compile_filter(raw).node == expected


def test_filter_raw_identity() -> None:
    raw = ["a", "Eq", 1]
    assert compile_filter(raw).raw is raw


def test_filter_none() -> None:
    compiled = compile_filter(None)
    assert compiled.node is None
    assert compiled.raw is None
    assert compiled.matches("", {}) is True


def test_value_key_forms() -> None:
    assert value_key(1) == ("n", 1)
    assert value_key(1.5) == ("n", 1.5)
    assert value_key("a") == ("s", "a")
    assert value_key(True) == ("b", True)
    assert value_key(None) == ("null", None)


def test_value_key_equality() -> None:
    assert value_key(1) == value_key(1.0)
    assert hash(value_key(1)) == hash(value_key(1.0))
    assert len({value_key(1), value_key(1.0), value_key(1)}) == 1
    assert value_key(True) != value_key(1)
    assert value_key(False) != value_key(0)
    assert value_key("1") != value_key(1)
    assert value_key(None) != value_key("")
    assert value_key(None) != value_key(0)
    assert value_key(None) != value_key(False)
    assert value_key(2**53 + 1) != value_key(float(2**53))


@pytest.mark.parametrize("value", [[1], {}, {"a": 1}, (1,), b"x", object()])
def test_value_key_rejects(value: object) -> None:
    with pytest.raises(TypeError):
        value_key(value)


# Random property tests.

SCALARS: list[object] = [
    None, 0, 1, 1.0, 2, -1.5, 2.5, True, False, "", "a", "b", "ab", "A", "1", "ba",
]
GLOBS = ["a*", "*b", "?", "[ab]*", "A*", "*", ""]
NEGATIONS = {
    "NotEq": "Eq",
    "NotIn": "In",
    "NotContains": "Contains",
    "NotContainsAny": "ContainsAny",
    "NotGlob": "Glob",
    "NotIGlob": "IGlob",
}


def random_seed() -> int:
    seed = int(os.environ.get("FILTER_TEST_SEED", random.randrange(2**32)))
    print(f"FILTER_TEST_SEED={seed}")
    return seed


def random_attr_value(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(SCALARS)
    if roll < 0.95:
        return [rng.choice(SCALARS) for _ in range(rng.randrange(4))]
    return {"k": rng.choice(SCALARS)}


def random_attrs(rng: random.Random) -> dict[str, object]:
    return {name: random_attr_value(rng) for name in ("a", "b") if rng.random() < 0.8}


def random_value(rng: random.Random, op: str) -> object:
    if op in ("Glob", "IGlob"):
        return rng.choice(GLOBS)
    if op in ("In", "ContainsAny"):
        return [rng.choice(SCALARS) for _ in range(rng.randrange(4))]
    if op == "Contains":
        return rng.choice([value for value in SCALARS if value is not None])
    if op.removeprefix("Any") in ("Lt", "Lte", "Gt", "Gte"):
        return rng.choice([value for value in SCALARS if is_ordered(value)])
    return rng.choice(SCALARS)


def test_negations_random() -> None:
    seed = random_seed()
    rng = random.Random(seed)
    for _ in range(3000):
        negated_op = rng.choice(sorted(NEGATIONS))
        leaf = [rng.choice(["a", "b", "id"]), NEGATIONS[negated_op]]
        leaf.append(random_value(rng, leaf[1]))
        positive = compile_filter(leaf).matches
        negated = compile_filter([leaf[0], negated_op, leaf[2]]).matches
        wrapped = compile_filter(["Not", leaf]).matches
        doc_id = rng.choice(["a", "ab", "b1"])
        attrs = random_attrs(rng)
        context = f"seed={seed} leaf={leaf} doc_id={doc_id!r} attrs={attrs}"
        assert negated(doc_id, attrs) is not positive(doc_id, attrs), context
        assert wrapped(doc_id, attrs) is not positive(doc_id, attrs), context


# A slow reference written from the rules, for the non-pattern operators.


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_ordered(value: object) -> bool:
    return is_number(value) or isinstance(value, str)


def same(left: object, right: object) -> bool:
    if is_number(left) and is_number(right):
        return left == right
    if isinstance(left, bool) and isinstance(right, bool):
        return left == right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is None and right is None


def ordered_as(left: object, right: object) -> bool:
    both_numbers = is_number(left) and is_number(right)
    return both_numbers or (isinstance(left, str) and isinstance(right, str))


COMPARES: dict[str, Callable[[Any, Any], bool]] = {
    "Lt": operator.lt,
    "Lte": operator.le,
    "Gt": operator.gt,
    "Gte": operator.ge,
}


def reference(op: str, value: object, attr: object) -> bool:
    values = value if isinstance(value, list) else [value]
    if op in ("Eq", "In"):
        return any(same(attr, item) for item in values)
    if op in COMPARES:
        return ordered_as(attr, value) and COMPARES[op](attr, value)
    if not isinstance(attr, list):
        return False
    if op in ("Contains", "ContainsAny"):
        return any(same(element, item) for element in attr for item in values)
    compare = COMPARES[op.removeprefix("Any")]
    return any(ordered_as(e, value) and compare(e, value) for e in attr)


def test_reference_random() -> None:
    seed = random_seed()
    rng = random.Random(seed)
    ops = ["Eq", "In", "Contains", "ContainsAny", *COMPARES]
    ops += ["Any" + op for op in COMPARES]
    for _ in range(3000):
        op = rng.choice(ops)
        value = random_value(rng, op)
        attrs = random_attrs(rng)
        matches = compile_filter(["a", op, value]).matches
        context = f"seed={seed} op={op} value={value!r} attrs={attrs}"
        assert matches(DOC_ID, attrs) is reference(op, value, attrs.get("a")), context
