"""Prototypes of Adam with coupled L2 computed inside Adam's own update.

``chain(wdax.l2, optax.adam)`` adds ``rate * theta`` to the gradient in one
transform and updates Adam's moments in the next. XLA's CPU backend does not
merge sibling loops into one multi-output kernel, so that chain launches a
kernel per moment and per parameter and reads the gradient and the parameter
more than once. The prototypes here compute the decayed gradient and both
moments in one function of a leaf: :func:`adam_l2_one_map` keeps optax's
layout of two moment trees, :func:`adam_l2_paired` keeps a leaf's two moments
in one array so that one kernel writes both. :func:`check_prototypes` asserts
that they match the chains they stand in for. They are not public API;
``overhead.py`` times them and ``RESULTS.md`` says what they measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import step_timing

import wdax

B1, B2, EPS = 0.9, 0.999, 1e-8


class AdamL2State(NamedTuple):
  count: jax.Array  # shape=(), dtype=jnp.int32
  mu: optax.Updates
  nu: optax.Updates


def _bias_corrections(count: jax.Array) -> tuple[jax.Array, jax.Array]:
  t = count.astype(jnp.float32)
  return 1 - jnp.float32(B1) ** t, 1 - jnp.float32(B2) ** t


def _adam_step(m, v, c1, c2, lr):
  return -lr * (m / c1.astype(m.dtype)) / (jnp.sqrt(v / c2.astype(v.dtype)) + EPS)


def adam_l2_one_map(
    lr: float, rate: float, *, mask: Any = None
) -> optax.GradientTransformation:
  """Adam with coupled L2, computed by one function over (g, m, v, theta)."""

  def init_fn(params):
    def zeros():
      return jax.tree.map(lambda p: jnp.zeros(p.shape, p.dtype), params)

    return AdamL2State(jnp.zeros([], jnp.int32), zeros(), zeros())

  def update_fn(updates, state, params=None):
    decayed = wdax.masks.resolve(mask, params)
    count = optax.safe_increment(state.count)
    c1, c2 = _bias_corrections(count)

    def leaf(g, m, v, p, on):
      if on:
        g = g + jnp.asarray(rate, g.dtype) * p
      m = B1 * m + (1 - B1) * g
      v = B2 * v + (1 - B2) * g * g
      return _adam_step(m, v, c1, c2, lr), m, v

    treedef = jax.tree.structure(updates)
    flat = (treedef.flatten_up_to(t) for t in (updates, state.mu, state.nu, params))
    u, m, v = (treedef.unflatten(x) for x in zip(*map(leaf, *flat, decayed)))
    return u, AdamL2State(count, m, v)

  return optax.GradientTransformation(init_fn, update_fn)


class PairedState(NamedTuple):
  count: jax.Array  # shape=(), dtype=jnp.int32
  moments: optax.Updates  # per leaf, the first and second moment in one array


_LAYOUTS = ('stacked', 'rows', 'interleaved', 'blocks')
_BLOCK = 1024


def _pair_view(shape: Sequence[int], layout: str) -> tuple[tuple[int, ...], int]:
  """The shape a leaf is viewed as (a free reshape) and where the pair goes."""
  shape = tuple(shape)
  if layout == 'blocks':
    n = int(np.prod(shape))
    block = next((b for b in (_BLOCK >> i for i in range(8)) if n % b == 0), n)
    return (n // block, block), 1
  if len(shape) < 2:
    return shape, 0
  return shape, {'stacked': 0, 'rows': len(shape) - 1, 'interleaved': len(shape)}[
      layout
  ]


def _with_pair(shape: Sequence[int], axis: int) -> tuple[int, ...]:
  return (*shape[:axis], 2, *shape[axis:])


def adam_l2_paired(
    lr: float,
    rate: float,
    *,
    mask: Any = None,
    layout: str = 'rows',
) -> optax.GradientTransformation:
  """Adam with coupled L2 whose two moments of a leaf live in one array.

  Both moments are written by one elementwise expression over that array, so
  XLA emits one loop kernel for them and one for the parameter: two kernels a
  leaf where ``optax.adam`` has three, and the moment kernel reads ``g`` and
  ``theta`` once where the chain's two moment kernels read them twice.
  ``layout`` places the pair axis: ``'stacked'`` in front, ``(2, *shape)``;
  ``'rows'`` before the last axis, ``(..., 2, n)``, so that the row of ``g``
  and ``theta`` read for ``m`` is still in L1 when ``v`` needs it;
  ``'interleaved'`` last, ``(*shape, 2)``; ``'blocks'`` views the leaf as rows
  of up to 1024 elements whatever its shape, ``(size / b, 2, b)``. Leaves of
  rank < 2 are stacked, except under ``'blocks'``.
  """
  if layout not in _LAYOUTS:
    raise ValueError(f'layout must be one of {_LAYOUTS}; got {layout!r}')

  def init_fn(params):
    def zeros(p):
      view, axis = _pair_view(p.shape, layout)
      return jnp.zeros(_with_pair(view, axis), p.dtype)

    return PairedState(jnp.zeros([], jnp.int32), jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    decayed = wdax.masks.resolve(mask, params)
    count = optax.safe_increment(state.count)
    c1, c2 = _bias_corrections(count)

    def leaf(g, mv, p, on):
      if on:
        g = g + jnp.asarray(rate, g.dtype) * p
      view, axis = _pair_view(g.shape, layout)
      along = _with_pair((1,) * len(view), axis)
      second = jax.lax.broadcasted_iota(jnp.int32, along, axis) == 1
      gp = jnp.expand_dims(g.reshape(view), axis)
      # One elementwise expression over the pair, not a stack of two results:
      # XLA cannot write a concatenate in place and would copy both arrays.
      mv = jnp.where(second, B2 * mv + (1 - B2) * gp * gp, B1 * mv + (1 - B1) * gp)
      m, v = (jax.lax.index_in_dim(mv, i, axis, keepdims=False) for i in (0, 1))
      return _adam_step(m, v, c1, c2, lr).reshape(g.shape), mv

    treedef = jax.tree.structure(updates)
    flat = (treedef.flatten_up_to(t) for t in (updates, state.moments, params))
    u, mv = (treedef.unflatten(x) for x in zip(*map(leaf, *flat, decayed)))
    return u, PairedState(count, mv)

  return optax.GradientTransformation(init_fn, update_fn)


def check_prototypes(lr: float, rate: float) -> None:
  """Asserts that each prototype matches the chain it stands in for.

  Three steps of each from the same parameters and gradients, at learning
  rate ``lr`` and decay ``rate``, agree with the chain's to a relative 1e-6.
  """
  rng = np.random.default_rng(1)
  shapes = {
      'attn': {'kernel': (8, 2, 4), 'bias': (2, 4)},
      'Dense_0': {'kernel': (8, 16), 'bias': (16,)},
      'LayerNorm_0': {'scale': (8,)},
      'Embed_0': {'embedding': (32, 8)},
  }
  params = jax.tree.map(
      lambda s: jnp.array(rng.standard_normal(s, np.float32)),
      shapes,
      is_leaf=lambda x: isinstance(x, tuple),
  )
  grads = jax.jit(lambda t: jax.tree.map(lambda p: jnp.cos(50 * p), t))(params)
  flax = wdax.masks.flax_default()
  l2_adam = optax.chain(wdax.l2(rate, mask=flax), optax.adam(lr))
  pairs = [
      (adam_l2_one_map(lr, rate, mask=flax), l2_adam),
      (adam_l2_paired(lr, 0.0), optax.adam(lr)),
      *((adam_l2_paired(lr, rate, mask=flax, layout=k), l2_adam) for k in _LAYOUTS),
  ]
  cache: dict[int, Any] = {}

  def run(tx):
    if id(tx) not in cache:
      step = step_timing.make_step(tx)
      p, s = step_timing.fresh(tx, params)
      for _ in range(3):
        p, s = step(p, s, grads)
      cache[id(tx)] = p
    return cache[id(tx)]

  for proto, reference in pairs:
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        run(proto),
        run(reference),
    )
