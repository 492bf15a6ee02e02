"""One way to make a pytree: a frozen dataclass whose fields are leaves unless marked static.

Every container in rgjax (spectra, cutoffs, layers, results) is declared with :func:`dataclass`;
fields that are configuration rather than numbers (names, flags, callables, shapes) are declared
with ``field(static=True)`` and travel in the tree definition, so ``jit`` specialises on them.

Why not ``jax.tree_util.register_dataclass``: on jax 0.10 the tree definitions of *different*
dataclass types with the same field names compare equal while hashing differently, so on a
hash-bucket collision ``jit``'s cache can return the program compiled for the other type (seen with
two kernel layers). Ordinary custom nodes, as registered here, compare their types.

Unflattening bypasses ``__init__`` and ``__post_init__``: leaves may be tracers or placeholders,
and validation belongs to the public constructor, not to every ``tree_map``.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from rgjax._pytree import dataclass, field
    >>> @dataclass
    ... class Pair:
    ...     value: jax.Array
    ...     name: str = field(static=True, default="a")
    >>> [leaf.shape for leaf in jax.tree_util.tree_leaves(Pair(jnp.ones(2), "b"))]
    [(2,)]
    >>> jax.tree_util.tree_structure(Pair(jnp.ones(2), "b"))
    PyTreeDef(CustomNode(Pair[('b',)], [*]))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

import jax

__all__ = ["dataclass", "field", "static_fields", "data_fields"]

T = TypeVar("T")
_STATIC = "rgjax_static"


def field(*, static: bool = False, **kwargs: Any) -> Any:
    """A dataclass field; ``static=True`` makes it part of the tree definition, not a leaf."""
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata[_STATIC] = static
    return dataclasses.field(metadata=metadata, **kwargs)


def static_fields(cls: type) -> tuple[str, ...]:
    """Names of the static (tree-definition) fields of a pytree dataclass, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(_STATIC, False))


def data_fields(cls: type) -> tuple[str, ...]:
    """Names of the leaf fields of a pytree dataclass, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get(_STATIC, False))


def _register(cls: type[T]) -> type[T]:
    data, meta = data_fields(cls), static_fields(cls)

    def flatten_with_keys(obj: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        children = tuple((jax.tree_util.GetAttrKey(f), getattr(obj, f)) for f in data)
        return children, tuple(getattr(obj, f) for f in meta)

    def flatten(obj: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return tuple(getattr(obj, f) for f in data), tuple(getattr(obj, f) for f in meta)

    def unflatten(aux: tuple[Any, ...], children: Any) -> T:
        obj = object.__new__(cls)
        for name, value in zip(meta + data, tuple(aux) + tuple(children), strict=True):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
    return cls


@overload
def dataclass(cls: type[T], /) -> type[T]: ...
@overload
def dataclass(*, eq: bool = ...) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, dataclasses.field))
def dataclass(cls: type[T] | None = None, /, *, eq: bool = True) -> Any:
    """Frozen dataclass registered as a pytree (leaves: fields not marked ``static``).

    Use ``eq=False`` for containers of arrays, whose element-wise ``==`` is not a truth value.
    """

    def wrap(c: type[T]) -> type[T]:
        return _register(dataclasses.dataclass(frozen=True, eq=eq)(c))

    return wrap if cls is None else wrap(cls)
