"""The house pytree dataclass: leaves and static fields, jit caches, validation bypass."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgjax._pytree import data_fields, dataclass, field, static_fields


@dataclass
class Alpha:
    value: jax.Array
    label: str = field(static=True, default="x")

    def kind(self) -> int:
        return 1


@dataclass
class Beta:
    value: jax.Array
    label: str = field(static=True, default="x")

    def kind(self) -> int:
        return 2


@dataclass(eq=False)
class Checked:
    value: jax.Array

    def __post_init__(self):
        if np.any(np.asarray(self.value) < 0):
            raise ValueError("negative")


def test_leaves_and_static_fields():
    a = Alpha(jnp.arange(3.0), "name")
    leaves, treedef = jax.tree_util.tree_flatten(a)
    assert len(leaves) == 1 and np.array_equal(leaves[0], np.arange(3.0))
    assert data_fields(Alpha) == ("value",) and static_fields(Alpha) == ("label",)
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(back) is Alpha and back.label == "name"
    keys = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(a)[0]]
    assert keys == [".value"]


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Alpha(jnp.ones(1)).value = jnp.zeros(1)  # type: ignore[misc]


def test_jit_caches_classes_with_equal_fields_separately():
    # Different types with the same fields and static values must never share a compiled program.
    f = jax.jit(lambda obj: obj.value * obj.kind())
    x = jnp.ones(2)
    for _ in range(3):
        assert float(f(Alpha(x))[0]) == 1.0
        assert float(f(Beta(x))[0]) == 2.0
    assert jax.tree_util.tree_structure(Alpha(x)) != jax.tree_util.tree_structure(Beta(x))


def test_static_field_value_is_part_of_the_cache_key():
    f = jax.jit(lambda obj: obj.value + len(obj.label))
    assert float(f(Alpha(jnp.zeros(()), "ab"))) == 2.0
    assert float(f(Alpha(jnp.zeros(()), "abcd"))) == 4.0


def test_unflatten_skips_validation_so_tree_map_works_on_placeholders():
    c = Checked(jnp.ones(2))
    with pytest.raises(ValueError):
        Checked(-jnp.ones(2))
    neg = jax.tree_util.tree_map(lambda v: -v, c)  # validation belongs to the constructor only
    assert float(neg.value[0]) == -1.0
    assert jax.grad(lambda c: jnp.sum(c.value ** 2))(c).value.shape == (2,)
