r"""Stochastic rounding of low-precision parameters, as the last transform of a chain.

In bfloat16 a weight has 8 significant bits. An update smaller than half the
spacing between the weight and its neighbours is rounded away by
``optax.apply_updates``, every step, however many steps there are: a weight
decay of :math:`c = 10^{-5}` per step leaves bfloat16 weights exactly where
they started. Rounding up or down at random, with the probabilities that make
the expected result exact, keeps those small updates on average.
:func:`stochastic_rounding` does that for every bfloat16 and float16 leaf.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdax import _checks
from wdax import _leafwise

__all__ = ['RoundingState', 'stochastic_rounding']

# The dtypes rounded stochastically; wider floats pass through unchanged.
_LOW = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


class RoundingState(NamedTuple):
  """State of :func:`stochastic_rounding`: the key of the next step.

  The raw key data (``jax.random.key_data``) of JAX's default PRNG, an
  ordinary ``uint32`` array, so that ``optax.MultiSteps``,
  ``optax.apply_if_finite`` and checkpoints handle it like any other state.
  """

  key: jax.Array  # dtype=jnp.uint32, shape=(2,) for threefry


def _round_bfloat16(v: jax.Array, bits: jax.Array) -> jax.Array:
  # A bfloat16 is a float32 whose low 16 bits are 0, and float32's layout is
  # monotone in its magnitude bits. Adding 16 uniform bits to the magnitude and
  # clearing them rounds |v| up with probability (|v| - lo) / (hi - lo): across
  # powers of two, in the subnormal range, and with either sign alike.
  word = jax.lax.bitcast_convert_type(v, jnp.uint32)
  word = (word + (bits >> 16)) & jnp.uint32(0xFFFF0000)
  rounded = jax.lax.bitcast_convert_type(word, jnp.float32)
  # A carry out of a NaN's or an infinity's mantissa would change its sign.
  return jnp.where(jnp.isfinite(v), rounded, v).astype(jnp.bfloat16)


def _round_float16(v: jax.Array, bits: jax.Array) -> jax.Array:
  info = jnp.finfo(jnp.float16)
  _, exponent = jnp.frexp(v)
  # The float16 spacing at v, 2**k: constant below the smallest normal. Every
  # such power of two is a normal float32, and so are v / 2**k, its floor and
  # fraction: all exact.
  k = jnp.maximum(exponent - 1, info.minexp) - info.nmant
  spacing = jnp.ldexp(jnp.float32(1), k)
  scaled = v / spacing
  low = jnp.floor(scaled)
  # 23 uniform bits: P(u < frac) = frac exactly wherever frac has at most 23
  # bits, which holds from float16's smallest subnormal up.
  u = (bits >> 9).astype(jnp.float32) * jnp.float32(2.0**-23)
  up = (u < scaled - low).astype(jnp.float32)
  rounded = (low + up) * spacing
  return jnp.where(jnp.isfinite(v), rounded, v).astype(jnp.float16)


def _mix(h: jax.Array) -> jax.Array:
  # MurmurHash3's 32-bit finaliser: a bijection whose every output bit depends
  # on every input bit.
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _bits(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """32 uniform bits per element: a hash of its index keyed by two ``seed`` words.

  ``jax.random.bits`` costs about 50 ns an element on CPU (Threefry's 20
  rounds), several times a whole Adam step; this hash costs about 1 ns.
  Rounding needs bits independent of the values and of each other, not
  cryptographic ones; the seed words come from Threefry, fresh for every
  step and leaf. The index is an iota, which XLA partitions like the leaf:
  each shard hashes its own indices, so shards draw different bits, the same
  as unsharded.
  """
  size = int(np.prod(shape, dtype=np.int64))
  index = jax.lax.iota(jnp.uint32, size).reshape(shape)
  return _mix(_mix(index ^ seed[0]) + seed[1])


def _landing(u: jax.Array, p: jax.Array, seed: jax.Array) -> jax.Array:
  """The update that takes ``p`` to ``p + u`` rounded stochastically."""
  v = p.astype(jnp.float32) + u.astype(jnp.float32)
  bits = _bits(seed, p.shape)
  if p.dtype == jnp.bfloat16:
    target = _round_bfloat16(v, bits)
  else:
    target = _round_float16(v, bits)
  # target - p is exact in u's dtype when target and p have the same sign and
  # are within a factor of 2 of each other (Sterbenz's lemma), or when u is
  # float32 and they are within 2**16: then p + step, as optax.apply_updates
  # adds them, is target exactly.
  return (target.astype(jnp.float32) - p.astype(jnp.float32)).astype(u.dtype)


def _check_seed(seed: Any) -> Any:
  if _checks.is_traced(seed):
    return seed
  dtype = getattr(seed, 'dtype', None)
  integral = isinstance(seed, (int, np.integer)) or (
      dtype is not None and np.ndim(seed) == 0 and jnp.issubdtype(dtype, jnp.integer)
  )
  if isinstance(seed, bool) or not integral:
    raise ValueError(
        f'stochastic_rounding(...): seed must be an int or an integer scalar '
        f'array; got {type(seed).__name__} {seed!r}.'
    )
  return seed


def _check_dtypes(fn: str, params: optax.Params) -> None:
  all_paths, leaves = _leafwise.check_params(fn, params)
  for path, p in zip(all_paths, leaves):
    dtype = jnp.dtype(p.dtype)
    narrow = jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4
    if narrow and dtype not in _LOW:
      raise ValueError(
          f'{fn}: parameter path {path!r} is {dtype}; stochastic rounding is '
          'implemented for bfloat16 and float16 only.'
      )


def stochastic_rounding(seed: int | jax.Array = 0) -> optax.GradientTransformation:
  r"""Rounds bfloat16 and float16 parameters stochastically when updates land.

  .. math::

    v = \theta_t + u_t, \qquad
    \theta_{t+1} = \begin{cases} \lceil v \rceil & \text{with probability }
    (v - \lfloor v \rfloor) / (\lceil v \rceil - \lfloor v \rfloor) \\
    \lfloor v \rfloor & \text{otherwise} \end{cases}, \qquad
    u'_t = \theta_{t+1} - \theta_t

  where :math:`\theta_t` is a bfloat16 or float16 parameter, :math:`u_t` the
  update the chain proposes, :math:`v` their sum computed in float32,
  :math:`\lfloor v \rfloor` and :math:`\lceil v \rceil` the two neighbouring
  values of the parameter's dtype around :math:`v`, and :math:`u'_t` the
  update returned. So :math:`\mathbb{E}[\theta_{t+1}] = v`: updates far below
  the dtype's spacing, such as a weight decay of :math:`10^{-5}` per step,
  move the weights on average instead of being rounded away every step.
  Stochastic rounding for low-precision training is from Gupta, Agrawal,
  Gopalakrishnan & Narayanan, "Deep Learning with Limited Numerical
  Precision", 2015, arXiv:1502.02551; Zamirai, Zhang, Aberger & De Sa,
  "Revisiting BFloat16 Training", 2020, arXiv:2010.06192, show that pure
  bfloat16 training with it on the weight update matches float32.

  Place it *last* in the chain, after the learning-rate scaling and every
  decay, so that nothing changes the update between it and
  ``optax.apply_updates``, which adds :math:`\theta_t + u'_t` in the wider of
  the two dtypes and casts the sum back. :math:`u'_t` keeps :math:`u_t`'s
  dtype (as ``optax.apply_if_finite`` and ``optax.MultiSteps`` need). The sum
  lands on :math:`\theta_{t+1}` exactly whenever :math:`\theta_{t+1} -
  \theta_t` is representable there: always for a step of less than half the
  weight (the two then have the same sign and lie within a factor of 2:
  Sterbenz's lemma), from and to zero, and, for float32 updates, whenever
  the two are within a factor of :math:`2^{16}`. A larger step with bfloat16
  updates (a small weight changing sign, say) may not be representable as a
  bfloat16 update at all; it lands within one bfloat16 spacing of the *step*
  from :math:`\theta_{t+1}`, as bfloat16 updates can carry no more.

  Float32 and wider leaves, integer leaves and ``None`` updates pass through
  unchanged, bit for bit. NaN and infinite sums are rounded as
  ``optax.apply_updates`` rounds them. XLA on CPU flushes float32 (and so
  bfloat16) subnormals to zero, in this rounding as in its own additions.

  The state is a PRNG key, split every step. Each leaf's bits are a hash
  (MurmurHash3's finaliser, twice) of each element's index, keyed by two
  words that Threefry draws for that step and leaf: about 50 times cheaper on CPU than ``jax.random.bits`` (see
  ``benchmarks/RESULTS.md``). Under ``jit`` with sharded parameters each
  shard hashes its own indices where it lives: different bits on every
  shard, the same as unsharded. The seed may be traced, to ``vmap`` over
  seeds. Leaves of more than :math:`2^{32}` elements reuse indices.

  Args:
    seed: an int or integer scalar array, the seed of the PRNG key.

  Returns:
    An ``optax.GradientTransformation`` whose state is a
    :class:`RoundingState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = optax.chain(optax.sgd(1.0), wdax.stochastic_rounding(seed=0))
    >>> params = {'w': jnp.full(10_000, 1.0, jnp.bfloat16)}
    >>> grads = {'w': jnp.full(10_000, -2.0**-10, jnp.bfloat16)}  # 1/8 spacing
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> new = optax.apply_updates(params, updates)['w']
    >>> sorted(set(new.tolist()))  # the two neighbours of 1 + 2**-10
    [1.0, 1.0078125]
    >>> print(f'{float(new.astype(jnp.float32).mean() - 1) * 2**10:.1f}')
    1.0
  """
  fn = 'stochastic_rounding(...)'
  seed = _check_seed(seed)

  def init_fn(params: optax.Params) -> RoundingState:
    _check_dtypes(fn, params)
    return RoundingState(key=jax.random.key_data(jax.random.key(seed)))

  def update_fn(updates, state, params=None):
    step_key, next_key = jax.random.split(jax.random.wrap_key_data(state.key))
    new_state = RoundingState(key=jax.random.key_data(next_key))
    if updates is None:
      return None, new_state
    leaves = _leafwise.line_up(fn, updates, params)
    # Two seed words per leaf, drawn at once: one small Threefry per step.
    seeds = jax.random.bits(step_key, (len(leaves.params), 2), jnp.uint32)
    new = []
    for i, (u, p) in enumerate(zip(leaves.updates, leaves.params)):
      if u is None or p is None or jnp.dtype(p.dtype) not in _LOW:
        new.append(u)
      else:
        new.append(_landing(u, p, seeds[i]))
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)
