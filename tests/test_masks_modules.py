"""masks.modules: parameters selected by the type of the module owning them."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import wdax
from wdax import masks


class _Block(nnx.Module):
  def __init__(self, rngs):
    self.attn = nnx.Linear(4, 4, rngs=rngs)
    self.post = nnx.LayerNorm(4, rngs=rngs)  # named freely, no 'norm' in it
    self.gate_norm = nnx.RMSNorm(4, rngs=rngs)


class _Model(nnx.Module):
  def __init__(self, rngs):
    self.blocks = nnx.List([_Block(rngs), _Block(rngs)]) if hasattr(nnx, 'List') else [_Block(rngs), _Block(rngs)]
    self.out = nnx.Linear(4, 2, rngs=rngs)


def _norm_paths():
  return sorted(
      f'blocks/{i}/{name}/{leaf}'
      for i in range(2)
      for name, leaves in (('post', ('scale', 'bias')), ('gate_norm', ('scale',)))
      for leaf in leaves
  )


def test_nnx_norms_are_found_by_type_whatever_their_name():
  model = _Model(nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  chosen = masks.modules(model, nnx.LayerNorm, nnx.RMSNorm).select(state)
  got = sorted(p for p, c in zip(wdax.leaf_paths(state), chosen) if c)
  assert got == _norm_paths()


def test_modules_compose_and_leave_the_norms_undecayed():
  model = _Model(nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  norms = masks.modules(model, nnx.LayerNorm, nnx.RMSNorm)
  tx = wdax.decoupled(0.5, mask=~norms & masks.exclude('bias'))
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, state), tx.init(state), state)
  flat = dict(zip(wdax.leaf_paths(updates), jax.tree.leaves(updates)))
  params = dict(zip(wdax.leaf_paths(state), jax.tree.leaves(state)))
  for path, u in flat.items():
    decayed = path not in _norm_paths() and not path.endswith('bias')
    want = -0.5 * params[path] if decayed else np.zeros_like(params[path])
    np.testing.assert_array_equal(u, want, err_msg=path)


def test_no_module_of_the_types_is_an_error_naming_them():
  with pytest.raises(ValueError, match='no module of type BatchNorm'):
    masks.modules(_Model(nnx.Rngs(0)), nnx.BatchNorm)


def test_linen_modules_found_by_intercepting_init():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Dense(3)(x)
      x = nn.LayerNorm(name='post')(x)
      return nn.Dense(2)(x)

  x = jnp.ones((1, 2))
  variables = Net().init(jax.random.key(0), x)
  mask = masks.modules(Net(), nn.LayerNorm, init_args=(x,))
  for tree in (variables, variables['params']):
    chosen = dict(zip(wdax.leaf_paths(tree), mask.select(tree)))
    assert sorted(p for p, c in chosen.items() if c) == sorted(
        p for p in chosen if '/post/' in f'/{p}'
    )
  tx = optax.masked(optax.set_to_zero(), mask)
  assert tx.init(variables['params']) is not None
