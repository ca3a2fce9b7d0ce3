import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastfd._params import flatten

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
arrays = shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=st.floats(-1e3, 1e3)))


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), arrays, min_size=1,
                       max_size=4))
def test_dict_round_trip(params):
    layout, x = flatten(params)
    back = layout.unflatten(x)
    assert list(back) == list(params)
    for key in params:
        np.testing.assert_array_equal(back[key], params[key])
        assert back[key].shape == params[key].shape
    views = layout.views(x)
    for key in params:
        assert np.shares_memory(views[key], x)


@settings(max_examples=40, deadline=None)
@given(st.lists(arrays, min_size=1, max_size=4), st.booleans())
def test_sequence_round_trip_and_names(params, as_tuple):
    params = tuple(params) if as_tuple else params
    layout, x = flatten(params)
    back = layout.unflatten(x)
    assert type(back) is type(params)
    for a, b in zip(params, back):
        np.testing.assert_array_equal(a, b)
    names = layout.names(np.arange(x.size))
    assert len(set(names)) == x.size  # every entry has its own name


def test_names_match_numpy_indexing():
    params = {"W1": np.arange(24.0).reshape(4, 6), "b": np.arange(3.0)}
    layout, x = flatten(params)
    for i in range(x.size):
        name = layout.name(i)
        key, index = name.split("[")
        index = tuple(int(v) for v in index.rstrip("]").split(","))
        assert params[key][index] == x[i]
    assert layout.name(6 * 1 + 3) == "W1[1, 3]"


def test_single_array_and_scalar_names():
    layout, _ = flatten(np.zeros((2, 2)))
    assert layout.name(3) == "x[1, 1]"
    layout, _ = flatten([np.zeros(()), np.zeros(2)])
    assert layout.names([0, 2]) == ["[0]", "[1][1]"]


def test_flatten_copies_and_reads_any_layout():
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4))[:, ::2]
    a.setflags(write=False)
    layout, x = flatten(a)
    np.testing.assert_array_equal(layout.unflatten(x), a)
    x[0] = 99
    assert a[0, 0] == 0


def test_float32_kept():
    layout, x = flatten({"w": np.ones(3, dtype=np.float32)})
    assert x.dtype == np.float32 and layout.unflatten(x)["w"].dtype == np.float32
