import numpy as np
import pytest

from fastfd import _validate
from fastfd._params import flatten
from fastfd._sampling import (
    confidence_statement,
    random_directions,
    stratified_sample,
)


def test_every_array_gets_its_share_and_at_least_five():
    layout, _ = flatten({"W": np.zeros((300, 10)), "b": np.zeros(10), "c": np.zeros(3)})
    coords = stratified_sample(layout, 200, np.random.default_rng(0))
    owner = layout.array_of(coords)
    counts = np.bincount(owner, minlength=3)
    assert counts[1] >= 5 and counts[2] == 3
    assert counts.sum() == 200  # the minimums come out of the proportional shares
    assert len(np.unique(coords)) == len(coords)


def test_same_seed_same_sample_and_different_seed_differs():
    layout, _ = flatten(np.zeros((50, 20)))
    a = stratified_sample(layout, 40, np.random.default_rng(3))
    b = stratified_sample(layout, 40, np.random.default_rng(3))
    c = stratified_sample(layout, 40, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_boundary_slices_always_visited():
    shape = (40, 7)
    layout, _ = flatten({"W": np.zeros(shape)})
    for seed in range(5):
        coords = stratified_sample(layout, 20, np.random.default_rng(seed))
        rows, cols = np.unravel_index(coords, shape)
        assert 0 in rows and 39 in rows and 0 in cols and 6 in cols


def test_huge_array_sample_is_cheap_and_distinct():
    layout, _ = flatten(np.zeros(1, dtype=np.float64))
    from fastfd._params import Layout
    big = Layout("array", (None,), ((5_000_000,),), np.array([0, 5_000_000]), np.dtype("f8"))
    coords = stratified_sample(big, 1000, np.random.default_rng(0))
    assert len(coords) == 1000 and coords.min() == 0 and coords.max() == 4_999_999


@pytest.mark.parametrize("sample, expected", [(None, None), ("all", None), ("auto", "auto"),
                                              (10, 10), (1000, None), (0.5, 50), (1.0, None)])
def test_parse_sample(sample, expected):
    assert _validate.sample(sample, 100) == expected


def test_rule_of_three():
    text = confidence_statement(300, 10_000)
    assert "fewer than 1% of entries are wrong" in text
    assert confidence_statement(100, 100) is None


def test_random_directions_are_unit_and_reproducible():
    layout, _ = flatten(np.zeros(30))
    a = list(random_directions(layout, 3, np.random.default_rng(1)))
    b = list(random_directions(layout, 3, np.random.default_rng(1)))
    for u, v in zip(a, b):
        assert np.linalg.norm(u) == pytest.approx(1.0)
        np.testing.assert_array_equal(u, v)


def test_random_directions_give_every_array_the_same_share():
    # a bias of 10 entries weighs as much in g . v as a weight matrix of 100,000
    layout, _ = flatten({"W": np.zeros((1000, 100)), "b": np.zeros(10)})
    v = next(random_directions(layout, 1, np.random.default_rng(0)))
    norms = [np.linalg.norm(v[span]) for _, span in layout.slices()]
    np.testing.assert_allclose(norms, [2**-0.5, 2**-0.5])



def test_boundary_slices_of_3d_arrays_fit_the_minimum_quota():
    shape = (6, 7, 8)
    layout, _ = flatten({"T": np.zeros(shape), "w": np.zeros(500)})
    for seed in range(5):
        coords = stratified_sample(layout, 10, np.random.default_rng(seed))
        mine = coords[coords < 336]
        index = np.unravel_index(mine, shape)
        for axis, n in enumerate(shape):
            assert 0 in index[axis] and n - 1 in index[axis]


def test_generator_seeds_are_refused():
    with pytest.raises(TypeError, match="seed must be a non-negative int"):
        _validate.seed(np.random.default_rng(0))
