"""Expanding a rendered matrix: the product of its axes, exclude, include, limits, and instance names."""

from __future__ import annotations

import pytest

from runner.expr.matrix import MatrixError, expand, label


def test_the_product_of_the_axes_in_matrix_order():
    assert expand({"os": ["linux", "mac"], "py": [1, 2]}) == [
        {"os": "linux", "py": 1}, {"os": "linux", "py": 2}, {"os": "mac", "py": 1}, {"os": "mac", "py": 2},
    ]


def test_exclude_removes_matching_combinations_and_include_extends_or_adds():
    combos = expand({
        "os": ["linux", "mac"],
        "py": [1, 2],
        "exclude": [{"os": "mac", "py": 1}],
        "include": [{"os": "linux", "extra": "lto"}, {"os": "windows", "py": 3}, {"py": 2, "os": "mac", "os_x": 1}],
    })
    assert combos == [
        {"os": "linux", "py": 1, "extra": "lto"},
        {"os": "linux", "py": 2, "extra": "lto"},
        {"os": "mac", "py": 2, "os_x": 1},
        {"os": "windows", "py": 3},
    ]


def test_an_include_never_overwrites_an_axis_value():
    assert expand({"n": [1], "include": [{"n": 2, "x": "y"}]}) == [{"n": 1}, {"n": 2, "x": "y"}]


@pytest.mark.parametrize("matrix, message", [
    ({"n": 3}, "axis `n` must be a list, got int"),
    ({"n": [1], "include": {"n": 2}}, "`include` must be a list of mappings"),
    ({"n": list(range(300))}, "the matrix expands to 300 instances, more than 256 (raise `max_instances`)"),
])
def test_what_cannot_be_expanded_says_why(matrix, message):
    with pytest.raises(MatrixError) as e:
        expand(matrix)
    assert str(e.value) == message


def test_settings_are_not_axes_and_max_instances_raises_the_limit():
    assert len(expand({"n": list(range(300)), "max_instances": 300, "fail_fast": False, "max_parallel": 2})) == 300


def test_instances_are_named_by_their_values_cut_when_long():
    assert label("build", {"shard": 1, "py": "3.12", "on": True}) == "build (shard=1, py=3.12, on=true)"
    assert label("b", {"v": "x" * 40}) == "b (v=" + "x" * 27 + "...)"
