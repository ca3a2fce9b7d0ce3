"""Flatten structured parameters once into one private vector, with a name for every entry.

Params are a float array, a Python float, a list of floats, any array-like (an object with
``__array__``: JAX arrays, CPU torch tensors, xarray), or dicts, lists, tuples and NamedTuples of
those, nested to any depth. They are converted once; all numerics work on the flat vector ``x``,
and the loss sees numpy views into it shaped like the caller's structure (containers rebuilt with
the same types), so perturbing ``x[i]`` in place costs O(1) and never copies P values. Entries
are named by their path: ``W1[12, 3]``, ``[0][2]``, ``layers[0]["W"][1, 2]``, ``cell.h[4]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# A node of the structure: ("leaf",), ("dict", keys, children), ("list", children),
# ("tuple", children) or ("named", cls, children). Leaves are numbered depth first.
Node = tuple

_REFUSED = {
    np.matrix: "np.matrix multiplies as matrices (`*` is a matrix product): pass np.asarray(W)",
    np.ma.MaskedArray: "a masked array's arithmetic skips masked entries: pass the data with "
                       "np.ma.getdata(W), or fill the masked entries first",
}


def _is_namedtuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _as_leaf(value, where: str) -> np.ndarray:
    """One parameter (or gradient) array from an array, number, list of numbers or array-like."""
    for refused, why in _REFUSED.items():
        if isinstance(value, refused):
            raise TypeError(f"{where} is a {type(value).__name__}, which fastfd does not convert "
                            f"silently: {why}")
    if isinstance(value, np.ndarray):
        return value if type(value) is np.ndarray else np.asarray(value)
    if _is_number(value) or isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
        try:
            return np.asarray(value)
        except Exception as error:  # a torch tensor that requires grad, ragged lists
            hint = (" (for a torch tensor: pass tensor.detach())"
                    if "requires grad" in str(error) else "")
            raise TypeError(f"{where} cannot be converted to a numpy array: {error}{hint}"
                            ) from None
    raise TypeError(
        f"{where} must be a float array (numpy or array-like), a float, or a dict, list, tuple "
        f"or NamedTuple of them; got {type(value).__name__}")


def _is_array_like_list(value) -> bool:
    """A list/tuple of plain numbers (or of such lists): one array, not a container."""
    if _is_namedtuple(value) or not isinstance(value, (list, tuple)) or not value:
        return False
    return all(_is_number(v) or _is_array_like_list(v) for v in value)


def _split(value, where: str, leaves: list, wheres: list) -> Node:
    """The structure of ``value``; its leaves (arrays) appended to ``leaves`` in order."""
    if isinstance(value, Mapping):
        keys = tuple(value.keys())
        return ("dict", keys, tuple(_split(value[k], f"{where}[{k!r}]", leaves, wheres)
                                    for k in keys))
    if _is_namedtuple(value):
        return ("named", type(value), tuple(
            _split(v, f"{where}.{name}", leaves, wheres)
            for name, v in zip(type(value)._fields, value)))
    if isinstance(value, (list, tuple)) and not _is_array_like_list(value):
        kind = "list" if isinstance(value, list) else "tuple"
        return (kind, tuple(_split(v, f"{where}[{i}]", leaves, wheres)
                            for i, v in enumerate(value)))
    leaves.append(_as_leaf(value, where))
    wheres.append(where)
    return ("leaf",)


def _join(where: str, key) -> str:
    return f'{where}["{key}"]' if isinstance(key, str) else f"{where}[{key!r}]"


def _labels(tree: Node, root: str) -> list[str]:
    """The name prefix of every leaf: the dict key or field name at the top (``W1``), with
    ``["key"]``, ``[i]`` and ``.field`` below; the ``root`` label for a single array."""
    out: list[str] = []

    def walk(node, prefix, top):
        kind = node[0]
        if kind == "leaf":
            out.append(prefix if prefix else root)
        elif kind == "dict":
            for key, child in zip(node[1], node[2]):
                walk(child, str(key) if top else _join(prefix, key), False)
        elif kind == "named":
            for name, child in zip(node[1]._fields, node[2]):
                walk(child, name if top else f"{prefix}.{name}", False)
        else:
            for i, child in enumerate(node[1]):
                walk(child, f"{prefix}[{i}]", False)

    walk(tree, "", True)
    return out


def _build(tree: Node, arrays: list):
    """A structure like ``tree`` around ``arrays`` (consumed in order)."""
    it = iter(arrays)

    def build(node):
        kind = node[0]
        if kind == "leaf":
            return next(it)
        if kind == "dict":
            return {key: build(child) for key, child in zip(node[1], node[2])}
        if kind == "named":
            return node[1](*(build(child) for child in node[2]))
        children = [build(child) for child in node[1]]
        return children if kind == "list" else tuple(children)

    return build(tree)


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each parameter array lives in the flat vector, and how to name its entries."""

    tree: Node
    labels: tuple[str, ...]  # name prefix of every array
    shapes: tuple[tuple[int, ...], ...]
    starts: np.ndarray  # start of array j in x; starts[-1] == size
    dtype: np.dtype
    label: str = "x"  # name of a single-array parameter

    @property
    def kind(self) -> str:
        """``"array"`` for a single array, else the top container's kind."""
        kind = self.tree[0]
        return {"leaf": "array", "named": "tuple"}.get(kind, kind)

    @property
    def size(self) -> int:
        return int(self.starts[-1])

    @property
    def n_arrays(self) -> int:
        return len(self.shapes)

    def array_label(self, j: int) -> str:
        """Name of parameter array ``j`` (``W1``, ``[0]``, ``layers[0]["W"]``)."""
        return self.labels[j]

    def array_of(self, coords: np.ndarray) -> np.ndarray:
        """Index of the parameter array holding each flat coordinate."""
        return np.searchsorted(self.starts, coords, side="right") - 1

    def name(self, i: int) -> str:
        """Readable name of flat entry ``i``, e.g. ``W1[12, 3]``."""
        i = int(i)
        j = int(self.array_of(np.array([i]))[0])
        local = i - int(self.starts[j])
        shape = self.shapes[j]
        label = self.labels[j]
        if not shape:
            return label
        index = np.unravel_index(local, shape)
        return f"{label}[{', '.join(str(int(k)) for k in index)}]"

    def names(self, coords) -> list[str]:
        return [self.name(i) for i in np.asarray(coords).reshape(-1)]

    def slices(self):
        """(label, slice of x) for every parameter array."""
        for j in range(self.n_arrays):
            yield self.labels[j], slice(int(self.starts[j]), int(self.starts[j + 1]))

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
        """The structure around ``arrays`` (one per parameter array), containers rebuilt."""
        return _build(self.tree, list(arrays))

    def flatten_like(self, values, what: str) -> np.ndarray:
        """Flatten ``values`` (a gradient, direction or step structure) as a float64 vector.

        Raises a clear error when the structure, keys or shapes differ from the params or
        when an entry is not finite.
        """
        out = np.empty(self.size, dtype=np.float64)
        for arr, (_, s) in zip(checked_leaves(self, values, what), self.slices()):
            out[s] = np.asarray(arr).reshape(-1)
        return out


def _describe(node: Node) -> str:
    kind = node[0]
    if kind == "leaf":
        return "array"
    if kind == "named":
        return node[1].__name__
    return kind


def _matching_leaves(node: Node, value, what: str, where: str, out: list) -> None:
    """Leaves of ``value`` following the params' structure ``node`` (lists and tuples may
    stand for each other; a NamedTuple for a tuple and the other way round)."""
    kind = node[0]
    here = where or what
    if kind == "leaf":
        if isinstance(value, Mapping) or (isinstance(value, (list, tuple))
                                           and not _is_array_like_list(value)):
            if where == "":  # the whole structure where params are one array
                raise TypeError(f"{what} must have the structure of params (array); got "
                                f"{type(value).__name__}")
            raise TypeError(f"{here} must be an array like the parameter; got "
                            f"{type(value).__name__}")
        out.append(_as_leaf(value, here))
        return
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise TypeError(f"{here} must have the structure of params (dict); got "
                            f"{type(value).__name__}")
        keys = node[1]
        if set(value.keys()) != set(keys):
            missing = [k for k in keys if k not in value]
            extra = [k for k in value.keys() if k not in keys]
            raise ValueError(f"{here} keys differ from params: missing {missing}, "
                             f"unexpected {extra}")
        for key, child in zip(keys, node[2]):
            _matching_leaves(child, value[key], what, _join(where, key) if where else
                             f"{what}[{key!r}]", out)
        return
    children = node[2] if kind == "named" else node[1]
    if not isinstance(value, (list, tuple)):
        got = "dict" if isinstance(value, Mapping) else type(value).__name__
        raise TypeError(f"{here} must have the structure of params ({_describe(node)}); got "
                        f"{got}")
    if len(value) != len(children):
        raise ValueError(f"{here} has {len(value)} arrays but params have {len(children)}")
    for i, (child, item) in enumerate(zip(children, value)):
        _matching_leaves(child, item, what, f"{where}[{i}]" if where else f"{what}[{i}]", out)


def _leaf_count(node: Node) -> int:
    kind = node[0]
    if kind == "leaf":
        return 1
    children = node[2] if kind in ("dict", "named") else node[1]
    return sum(_leaf_count(c) for c in children)


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


def flatten_leaves(params, label: str = "x") -> tuple[Layout, np.ndarray, list[np.ndarray]]:
    """:func:`flatten`, also returning the converted parameter arrays (only read)."""
    leaves: list[np.ndarray] = []
    wheres: list[str] = []
    tree = _split(params, "params", leaves, wheres)
    if tree[0] == "leaf":
        wheres = ["params"]
    elif not leaves:
        raise ValueError(f"params is an empty {_describe(tree)}; pass at least one float array")
    for leaf, where in zip(leaves, wheres):
        _check_param_dtype(leaf.dtype, where)
    dtypes = {leaf.dtype for leaf in leaves}
    if len(dtypes) > 1:
        found = ", ".join(f"{w}: {v.dtype}" for w, v in zip(wheres, leaves))
        raise TypeError(
            f"params mix floating dtypes ({found}); cast them to one dtype so that every "
            "entry is perturbed and rounded the same way")
    dtype = leaves[0].dtype
    sizes = [leaf.size for leaf in leaves]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if starts[-1] == 0:
        raise ValueError("params hold no entries (every array is empty)")
    layout = Layout(tree, tuple(_labels(tree, label)), tuple(leaf.shape for leaf in leaves),
                    starts, dtype, label)
    x = np.empty(int(starts[-1]), dtype=dtype)
    for leaf, (_, s) in zip(leaves, layout.slices()):
        x[s] = leaf.reshape(-1)  # reads through any strides; never writes to the caller
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"params are not finite at {layout.name(i)} (value {x[i]!r})")
    return layout, x, leaves


def flatten(params, label: str = "x") -> tuple[Layout, np.ndarray]:
    """Copy ``params`` into one private, contiguous 1-D vector and describe its layout.

    ``label`` names a single-array parameter in entry names (``x[12, 3]``). The caller's arrays
    are only read (read-only and non-contiguous arrays are fine).

    Examples
    --------
    >>> layout, x = flatten({"W": np.zeros((2, 3)), "b": np.ones(3)})
    >>> x.shape, layout.name(4), layout.name(7)
    ((9,), 'W[1, 1]', 'b[1]')
    >>> layout.unflatten(x)["b"]
    array([1., 1., 1.])
    >>> layout, _ = flatten({"layers": [{"W": np.zeros((2, 2))}], "scale": 1.0})
    >>> layout.name(3), layout.name(4)
    ('layers[0]["W"][1, 1]', 'scale')
    """
    layout, x, _ = flatten_leaves(params, label)
    return layout, x


def checked_leaves(layout: Layout, values, what: str) -> list[np.ndarray]:
    """The arrays of ``values`` (e.g. an analytic gradient) validated against ``layout``.

    Checks structure, keys, shapes, real dtype and finiteness without building a flat copy,
    so a sampled check of a huge model stays O(P) in memory.
    """
    leaves: list[np.ndarray] = []
    _matching_leaves(layout.tree, values, what, "", leaves)
    for j, (arr, shape) in enumerate(zip(leaves, layout.shapes)):
        label = layout.labels[j]
        where = _where_of(layout, what, label)
        if arr.dtype.kind not in "fiu" or arr.dtype == bool:
            raise TypeError(f"{where} must hold real numbers; got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(
                f"{where} has shape {arr.shape} but the parameter {label} has shape {shape}")
        finite = np.isfinite(arr)
        if not finite.all():
            local = int(np.flatnonzero(~finite.reshape(-1))[0])
            name = layout.name(int(layout.starts[j]) + local)
            raise ValueError(
                f"{what} is not finite at {name} (value {arr.reshape(-1)[local]!r}, "
                f"{int((~finite).sum())} non-finite entries)")
    return leaves


def _where_of(layout: Layout, what: str, label: str) -> str:
    """``gradient['W']``, ``gradient[0]``, ``gradient.W``, ``gradient layers[0]["W"]``."""
    top = layout.tree[0]
    if top == "leaf":
        return what
    if top == "dict" and label in map(str, layout.tree[1]):
        return f"{what}[{label!r}]"
    if label.startswith("["):
        return f"{what}{label}"
    if top == "named" and label.isidentifier():
        return f"{what}.{label}"
    return f"{what} {label}"


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


def first_difference(layout: Layout, x: np.ndarray, leaves: list[np.ndarray]) -> int | None:
    """Flat index of the first entry where ``x`` differs from the arrays ``leaves``, or None."""
    for leaf, (_, s) in zip(leaves, layout.slices()):
        differs = x[s] != leaf.reshape(-1)
        if differs.any():
            return int(s.start + np.flatnonzero(differs)[0])
    return None
