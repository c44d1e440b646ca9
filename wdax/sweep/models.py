r"""Built-in Flax (linen) models for the sweep, and a dropout it can sweep.

:class:`MLP` is the default model of ``wdax sweep``; :class:`TinyTransformer`
classifies token sequences or, with ``classes=None``, predicts each next
token. Both take the two keywords the built-in tasks pass when a model
accepts them: ``train`` (``True`` in a training step) and ``dropout`` (the
point's ``hp['dropout']``, a traced scalar). Flax's own ``nn.Dropout`` needs
its rate as a Python number; :func:`dropout` takes a traced one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate: Any, key: jax.Array | None) -> jax.Array:
  r"""Inverted dropout at a rate that may be traced.

  .. math::

    y_i = \frac{m_i\, x_i}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p)

  where :math:`x_i` are the inputs, :math:`p` the ``rate`` in :math:`[0, 1)`
  and :math:`m_i` drawn from ``key`` (Srivastava et al., "Dropout: A Simple
  Way to Prevent Neural Networks from Overfitting", JMLR 2014). With ``key``
  ``None`` (evaluation), or a rate that is the Python number 0, ``x`` is
  returned as it is. Use it in a model whose dropout rate a sweep varies.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> y = sweep.dropout(jnp.ones(1000), jnp.float32(0.5), jax.random.key(0))
    >>> sorted(set(y.tolist()))
    [0.0, 2.0]
    >>> sweep.dropout(jnp.ones(3), 0.5, None)
    Array([1., 1., 1.], dtype=float32)
  """
  if key is None or (isinstance(rate, (int, float)) and rate == 0):
    return x
  keep = 1.0 - jnp.asarray(rate, x.dtype)
  mask = jax.random.bernoulli(key, keep, x.shape)
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


def _dropout(module: nn.Module, x: jax.Array, rate: Any, train: bool) -> jax.Array:
  if not train or (isinstance(rate, (int, float)) and rate == 0):
    return x
  return dropout(x, rate, module.make_rng('dropout'))


class MLP(nn.Module):
  r"""A ReLU multilayer perceptron, the sweep's default model.

  .. math::

    h_0 = x, \qquad h_{l} = D_p(\max(W_l h_{l-1} + b_l, 0)), \qquad
    f(x) = W_{L+1} h_L + b_{L+1}

  where :math:`x` is the input (flattened after the example axis),
  :math:`h_l` the :math:`l`-th of :math:`L` hidden layers, :math:`W_l` its
  ``kernel``, :math:`b_l` its ``bias``, :math:`D_p` :func:`dropout` at rate
  :math:`p` while training, and :math:`f(x)` the outputs (logits, or
  predictions). Kernels start Glorot-uniform, as in scikit-learn's
  ``MLPClassifier`` (Glorot & Bengio, "Understanding the difficulty of
  training deep feedforward neural networks", AISTATS 2010), biases at zero.

  Attributes:
    hidden: the width of each hidden layer.
    outputs: the number of outputs: classes for a classifier, targets for a
      regression.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> model = sweep.MLP(hidden=(8,), outputs=3)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 4)))['params']
    >>> jax.tree.map(jnp.shape, params)['Dense_0']
    {'bias': (8,), 'kernel': (4, 8)}
  """

  hidden: Sequence[int] = (256,)
  outputs: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, *, dropout: Any = 0.0, train: bool = False) -> jax.Array:
    init = nn.initializers.glorot_uniform()
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, kernel_init=init)(x))
      x = _dropout(self, x, dropout, train)
    return nn.Dense(self.outputs, kernel_init=init)(x)


class TinyTransformer(nn.Module):
  r"""A small pre-norm transformer over token ids.

  .. math::

    h_0 = E[t] + P, \qquad
    h'_l = h_{l-1} + \mathrm{MHA}(\mathrm{LN}(h_{l-1})), \qquad
    h_l = h'_l + W_2\, \mathrm{gelu}(W_1 \mathrm{LN}(h'_l))

  where :math:`t` are the tokens, :math:`E` the token embedding, :math:`P`
  learned position embeddings (when ``positions > 0``), MHA multi-head
  self-attention (causal for a language model) and LN layer normalisation
  (Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762;
  pre-norm as in Xiong et al. 2020, arXiv:2002.04745). With ``classes`` set,
  the mean of the last layer's normalised states over positions gives
  ``classes`` logits; with ``classes=None`` each position gives logits over
  the ``vocab`` for the next token. Dropout at rate ``dropout`` follows the
  embedding and each residual branch while training.

  Attributes:
    vocab: the number of token ids.
    width: the model width.
    heads: attention heads.
    blocks: transformer blocks.
    classes: output classes, or ``None`` for a causal language model.
    positions: the longest sequence with a learned position embedding; 0 for
      none.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> lm = sweep.TinyTransformer(vocab=11, width=8, heads=2, blocks=1,
    ...                            classes=None, positions=5)
    >>> tokens = jnp.zeros((2, 5), jnp.int32)
    >>> lm.apply(lm.init(jax.random.key(0), tokens), tokens).shape
    (2, 5, 11)
  """

  vocab: int = 1000
  width: int = 64
  heads: int = 4
  blocks: int = 2
  classes: int | None = 10
  positions: int = 0

  @nn.compact
  def __call__(
      self, tokens: jax.Array, *, dropout: Any = 0.0, train: bool = False
  ) -> jax.Array:
    h = nn.Embed(self.vocab, self.width)(tokens)
    if self.positions:
      table = self.param(
          'position', nn.initializers.normal(0.02), (self.positions, self.width)
      )
      h = h + table[None, : tokens.shape[-1]].astype(h.dtype)
    h = _dropout(self, h, dropout, train)
    mask = None if self.classes is not None else nn.make_causal_mask(tokens)
    for _ in range(self.blocks):
      z = nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(h), mask=mask)
      h = h + _dropout(self, z, dropout, train)
      z = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(h)))
      h = h + _dropout(self, nn.Dense(self.width)(z), dropout, train)
    h = nn.LayerNorm()(h)
    if self.classes is None:
      return nn.Dense(self.vocab)(h)
    return nn.Dense(self.classes)(h.mean(axis=1))
