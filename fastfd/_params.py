"""Flatten structured parameters once into one private vector, with a name for every entry.

All numerics work on the flat vector ``x``; the loss sees views into it shaped like the
caller's structure, so perturbing ``x[i]`` in place costs O(1) and never copies P values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

_KINDS = ("array", "dict", "list", "tuple")


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each parameter array lives in the flat vector, and how to name its entries."""

    kind: str
    keys: tuple
    shapes: tuple[tuple[int, ...], ...]
    starts: np.ndarray  # start of array j in x; starts[-1] == size
    dtype: np.dtype
    label: str = "x"  # name of a single-array parameter

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    @property
    def n_arrays(self) -> int:
        return len(self.shapes)

    def array_label(self, j: int) -> str:
        """Name of parameter array ``j``: the dict key, ``[j]`` for sequences, else the label."""
        if self.kind == "dict":
            return str(self.keys[j])
        if self.kind == "array":
            return self.label
        return f"[{j}]"

    def array_of(self, coords: np.ndarray) -> np.ndarray:
        """Index of the parameter array holding each flat coordinate."""
        return np.searchsorted(self.starts, coords, side="right") - 1

    def name(self, i: int) -> str:
        """Readable name of flat entry ``i``, e.g. ``W1[12, 3]``."""
        i = int(i)
        j = int(self.array_of(np.array([i]))[0])
        local = i - int(self.starts[j])
        shape = self.shapes[j]
        label = self.array_label(j)
        if not shape:
            return label
        index = np.unravel_index(local, shape)
        return f"{label}[{', '.join(str(int(k)) for k in index)}]"

    def names(self, coords) -> list[str]:
        return [self.name(i) for i in np.asarray(coords).reshape(-1)]

    def slices(self):
        """(label, slice of x) for every parameter array."""
        for j in range(self.n_arrays):
            yield self.array_label(j), slice(int(self.starts[j]), int(self.starts[j + 1]))

    def views(self, x: np.ndarray):
        """The caller's structure, made of views into the 1-D contiguous buffer ``x``."""
        arrays = [x[s].reshape(shape) for (_, s), shape in zip(self.slices(), self.shapes)]
        return self._pack(arrays)

    def unflatten(self, vec: np.ndarray, dtype=None):
        """A new structure (fresh arrays of ``dtype``, default the params' dtype) from ``vec``."""
        vec = np.asarray(vec)
        dtype = self.dtype if dtype is None else dtype
        arrays = [
            np.array(vec[s], dtype=dtype).reshape(shape)
            for (_, s), shape in zip(self.slices(), self.shapes)
        ]
        return self._pack(arrays)

    def _pack(self, arrays):
        if self.kind == "array":
            return arrays[0]
        if self.kind == "dict":
            return dict(zip(self.keys, arrays))
        if self.kind == "list":
            return list(arrays)
        return tuple(arrays)

    def flatten_like(self, values, what: str) -> np.ndarray:
        """Flatten ``values`` (a gradient, direction or step structure) as a float64 vector.

        Raises a clear error when the structure, keys or shapes differ from the params or
        when an entry is not finite.
        """
        out = np.empty(self.size, dtype=np.float64)
        for arr, (_, s) in zip(checked_leaves(self, values, what), self.slices()):
            out[s] = np.asarray(arr).reshape(-1)
        return out


def _where(what: str, kind: str, key) -> str:
    if kind == "array":
        return what
    return f"{what}[{key!r}]"


def _leaves(values, what: str, expected: Layout | None = None) -> list[np.ndarray]:
    """The arrays of a structure, checked against the expected layout when given."""
    if isinstance(values, Mapping):
        kind, keys, leaves = "dict", tuple(values.keys()), list(values.values())
    elif isinstance(values, (list, tuple)):
        kind = "list" if isinstance(values, list) else "tuple"
        keys, leaves = tuple(range(len(values))), list(values)
    elif isinstance(values, np.ndarray) or (expected is not None and np.isscalar(values)):
        kind, keys, leaves = "array", (None,), [values]
    else:
        raise TypeError(
            f"{what} must be a float numpy array or a dict, list or tuple of them; "
            f"got {type(values).__name__}"
        )
    if expected is not None:
        if {kind, expected.kind} <= {"list", "tuple"}:
            kind = expected.kind
        if kind != expected.kind:
            raise TypeError(
                f"{what} must have the structure of params ({expected.kind}); got {kind}")
        if kind == "dict" and set(keys) != set(expected.keys):
            missing = [k for k in expected.keys if k not in values]
            extra = [k for k in keys if k not in expected.keys]
            raise ValueError(
                f"{what} keys differ from params: missing {missing}, unexpected {extra}"
            )
        if kind == "dict":
            leaves = [values[k] for k in expected.keys]
        if len(leaves) != expected.n_arrays:
            raise ValueError(
                f"{what} has {len(leaves)} arrays but params have {expected.n_arrays}"
            )
        return [np.asarray(v) for v in leaves]
    for key, leaf in zip(keys, leaves):
        if not isinstance(leaf, np.ndarray):
            raise TypeError(
                f"{_where(what, kind, key)} must be a float numpy array; got "
                f"{type(leaf).__name__} (nest at most one level: a dict/list/tuple of arrays)"
            )
    return leaves  # type: ignore[return-value]


_DTYPE_REASONS = {
    "f2": "float16 keeps about 3 significant digits, so finite differences resolve almost "
          "nothing and its rounding would swamp any gradient error",
}


def _check_param_dtype(dtype: np.dtype, where: str) -> None:
    """Only float32 and float64: the step rules, noise floors and tolerances are built for
    them (and numpy's longdouble is platform-dependent, usually computed in float64 anyway)."""
    if dtype in (np.float32, np.float64):
        return
    if dtype.kind != "f":
        raise TypeError(
            f"{where} has dtype {dtype}; finite differences need floating-point parameters "
            "(float32 or float64): cast with .astype(np.float64)")
    why = _DTYPE_REASONS.get(f"f{dtype.itemsize}", (
        f"{dtype} is platform-dependent extended precision that numpy ufuncs and BLAS mostly "
        "compute in float64 anyway, so steps and tolerances would be set for precision the "
        "loss does not have"))
    raise TypeError(f"{where} has dtype {dtype}; fastfd supports float32 and float64 only: "
                    f"{why}. Cast with .astype(np.float64)")


def flatten(params, label: str = "x") -> tuple[Layout, np.ndarray]:
    """Copy ``params`` into one private, contiguous 1-D vector and describe its layout.

    ``label`` names a single-array parameter in entry names (``x[12, 3]``).

    The caller's arrays are only read (read-only and non-contiguous arrays are fine).

    Examples
    --------
    >>> layout, x = flatten({"W": np.zeros((2, 3)), "b": np.ones(3)})
    >>> x.shape, layout.name(4), layout.name(7)
    ((9,), 'W[1, 1]', 'b[1]')
    >>> layout.unflatten(x)["b"]
    array([1., 1., 1.])
    """
    leaves = _leaves(params, "params")
    if isinstance(params, Mapping):
        kind, keys = "dict", tuple(params.keys())
    elif isinstance(params, (list, tuple)):
        kind = "list" if isinstance(params, list) else "tuple"
        keys = tuple(range(len(leaves)))
    else:
        kind, keys = "array", (None,)
    if not leaves:
        raise ValueError(f"params is an empty {kind}; pass at least one float array")
    for key, leaf in zip(keys, leaves):
        _check_param_dtype(leaf.dtype, _where("params", kind, key))
    dtypes = {leaf.dtype for leaf in leaves}
    if len(dtypes) > 1:
        found = ", ".join(f"{_where('params', kind, k)}: {v.dtype}" for k, v in zip(keys, leaves))
        raise TypeError(
            f"params mix floating dtypes ({found}); cast them to one dtype so that every "
            "entry is perturbed and rounded the same way"
        )
    dtype = leaves[0].dtype
    sizes = [leaf.size for leaf in leaves]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if starts[-1] == 0:
        raise ValueError("params hold no entries (every array is empty)")
    layout = Layout(kind, keys, tuple(leaf.shape for leaf in leaves), starts, dtype, label)
    x = np.empty(int(starts[-1]), dtype=dtype)
    for leaf, (_, s) in zip(leaves, layout.slices()):
        x[s] = leaf.reshape(-1)  # reads through any strides; never writes to the caller
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"params are not finite at {layout.name(i)} (value {x[i]!r})")
    return layout, x


def checked_leaves(layout: Layout, values, what: str) -> list[np.ndarray]:
    """The arrays of ``values`` (e.g. an analytic gradient) validated against ``layout``.

    Checks structure, keys, shapes, real dtype and finiteness without building a flat copy,
    so a sampled check of a huge model stays O(P) in memory.
    """
    leaves = _leaves(values, what, expected=layout)
    for j, (arr, shape) in enumerate(zip(leaves, layout.shapes)):
        where = _where(what, layout.kind, layout.keys[j])
        if arr.dtype.kind not in "fiu" or arr.dtype == bool:
            raise TypeError(f"{where} must hold real numbers; got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(
                f"{where} has shape {arr.shape} but the parameter {layout.array_label(j)} "
                f"has shape {shape}"
            )
        finite = np.isfinite(arr)
        if not finite.all():
            local = int(np.flatnonzero(~finite.reshape(-1))[0])
            name = layout.name(int(layout.starts[j]) + local)
            raise ValueError(
                f"{what} is not finite at {name} (value {arr.reshape(-1)[local]!r}, "
                f"{int((~finite).sum())} non-finite entries)"
            )
    return leaves


def gather(layout: Layout, leaves: list[np.ndarray], coords: np.ndarray) -> np.ndarray:
    """Entries ``coords`` (flat indices) of a structure given as its arrays, as float64."""
    out = np.empty(len(coords), dtype=np.float64)
    owner = layout.array_of(coords)
    for j, leaf in enumerate(leaves):
        mask = owner == j
        if mask.any():
            local = coords[mask] - layout.starts[j]
            out[mask] = np.asarray(leaf).reshape(-1)[local] if leaf.ndim else leaf
    return out


def dot(layout: Layout, leaves: list[np.ndarray], vec: np.ndarray, start: int = 0) -> float:
    """``sum(values[start:start + len(vec)] * vec)`` over flat entries, array by array.

    ``leaves`` must be C-contiguous (no flat copy is made).
    """
    stop = start + len(vec)
    total = 0.0
    for leaf, (_, s) in zip(leaves, layout.slices()):
        lo, hi = max(s.start, start), min(s.stop, stop)
        if lo < hi:
            part = leaf.reshape(-1)[lo - s.start:hi - s.start]
            total += float(np.dot(part.astype(np.float64, copy=False), vec[lo - start:hi - start]))
    return total


def first_difference(layout: Layout, x: np.ndarray, params) -> int | None:
    """Flat index of the first entry where ``x`` differs from ``params``, or None."""
    for leaf, (_, s) in zip(_leaves(params, "params"), layout.slices()):
        differs = x[s] != leaf.reshape(-1)
        if differs.any():
            return int(s.start + np.flatnonzero(differs)[0])
    return None
