r"""What a sweep trains: the task contract, and the built-in tasks.

A :class:`Task` is two functions::

  init(key, batch) -> params
  loss(params, batch, key, hp) -> (loss, {name: metric})

``batch`` is a minibatch of the data: the same pytree with fewer rows.
``loss`` returns scalar means over the batch; ``key`` is a
``jax.random.key`` in a training step and ``None`` when evaluating (no
dropout); ``hp`` is the point's dict of traced float32 scalars, every name
of the space.

A loss may take two keyword arguments more, and the sweep passes them when it
does:

- ``weight``: a float32 vector, one 0/1 entry per row of ``batch``. The last
  minibatch of an epoch is padded to the batch size, and an evaluation
  passes every example with the fold's ones marked; a loss that takes
  ``weight`` returns means over the rows marked 1 (:func:`mean` computes
  them). It is then exact for metrics that are no mean of per-example values,
  such as :math:`R^2`, and trains on every example each epoch. A loss without
  ``weight`` never sees a padded row: each epoch trains on full minibatches
  only (the last ``n mod batch_size`` examples of the epoch's order sit it
  out), and evaluation calls it one example at a time and averages, which is
  exact for means. A task with state also trains on full minibatches only,
  weight or not: BatchNorm's statistics over a batch would count its padding.
- ``state``: the model's non-trainable variables (BatchNorm statistics). Then
  ``init`` returns ``(params, state)`` and ``loss`` returns ``(loss, metrics,
  new_state)``. The state never reaches the optimiser, so it is never
  decayed; training steps carry the returned state forward, evaluation
  discards it.

The built-in tasks, :func:`classifier`, :func:`regressor` and
:func:`language_model`, take ``weight`` and ``state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wdax.sweep import _checks
from wdax.sweep import _networks

FOLDS = ('shuffled', 'stratified', 'contiguous')


@dataclasses.dataclass(frozen=True)
class Task:
  """A model to train and how to score it; see :mod:`wdax.sweep.tasks`.

  Attributes:
    init: ``init(key, batch) -> params``, or ``(params, state)`` when
      ``loss`` takes ``state``. ``batch`` holds the first example.
    loss: ``loss(params, batch, key, hp) -> (loss, {name: metric})``,
      optionally taking ``weight`` and ``state`` by keyword.
    hyperparameters: the space names ``loss`` reads from ``hp`` (a name
      neither it nor the optimiser uses is an error).
    folds: how a fold count splits the data: ``'shuffled'`` k-fold,
      ``'stratified'`` by ``labels(data)``, or ``'contiguous'`` blocks in
      order (for ordered data).
    labels: ``data -> labels`` for stratified folds.
    check: ``data -> None``, raising ``ValueError`` for data the task cannot
      train on.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> def init(key, batch):
    ...   return {'w': jnp.zeros(batch['x'].shape[1])}
    >>> def loss(params, batch, key, hp):
    ...   err = batch['x'] @ params['w'] - batch['y']
    ...   return jnp.mean(err ** 2), {}
    >>> task = sweep.Task(init=init, loss=loss)
    >>> task.weighted, task.stateful
    (False, False)
  """

  init: Callable[..., Any]
  loss: Callable[..., Any]
  hyperparameters: tuple[str, ...] = ()
  folds: str = 'shuffled'
  labels: Callable[[Any], Any] | None = None
  check: Callable[[Any], None] | None = None

  def __post_init__(self):
    for name in ('init', 'loss'):
      if not callable(getattr(self, name)):
        raise TypeError(f'Task {name} must be callable; got {getattr(self, name)!r}.')
    hp = self.hyperparameters
    if not isinstance(hp, (tuple, list)) or not all(isinstance(n, str) for n in hp):
      raise TypeError(f'Task hyperparameters must be a tuple of names; got {hp!r}.')
    object.__setattr__(self, 'hyperparameters', tuple(hp))
    if self.folds not in FOLDS:
      raise ValueError(
          f'Task folds must be one of {", ".join(map(repr, FOLDS))}; got {self.folds!r}.'
      )
    if (self.folds == 'stratified') != (self.labels is not None):
      raise ValueError("Task: give labels exactly when folds='stratified'.")
    _checks.keywords(self.loss, 'Task loss')

  @property
  def weighted(self) -> bool:
    """Whether ``loss`` takes ``weight``."""
    accepted, _, anything = _checks.keywords(self.loss, 'Task loss')
    return anything or 'weight' in accepted

  @property
  def stateful(self) -> bool:
    """Whether ``loss`` takes ``state``."""
    accepted, _, anything = _checks.keywords(self.loss, 'Task loss')
    return anything or 'state' in accepted


def mean(values: jax.Array, weight: jax.Array | None = None) -> jax.Array:
  r"""The mean of ``values`` over rows weighted by ``weight``.

  .. math::

    \bar v = \frac{\sum_i w_i \sum_j v_{ij}}{J \sum_i w_i}

  where :math:`v_{ij}` is entry :math:`j` of row :math:`i` (the example axis
  first), :math:`J` the entries per row and :math:`w_i` the row's weight;
  with ``weight`` ``None``, the plain mean. Use it in a loss that takes
  ``weight``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> sweep.mean(jnp.array([1.0, 2.0, 9.0]), jnp.array([1.0, 1.0, 0.0]))
    Array(1.5, dtype=float32)
  """
  values = jnp.asarray(values, jnp.float32)
  if weight is None:
    return jnp.mean(values)
  per_row = values.reshape(values.shape[0], -1).mean(axis=1)
  total = jnp.sum(weight)
  return jnp.sum(weight * per_row) / jnp.maximum(total, jnp.finfo(jnp.float32).tiny)


def _rows(data: Any, key: str, task: str) -> np.ndarray:
  if not isinstance(data, Mapping) or key not in data:
    have = sorted(data) if isinstance(data, Mapping) else type(data).__name__
    raise ValueError(f'{task}: data must be a dict with {key!r}; got {have}.')
  rows = np.asarray(data[key])
  if np.iscomplexobj(rows):
    raise ValueError(f'{task}: data[{key!r}] must be real; got dtype {rows.dtype}.')
  return rows


def _outputs(network: _networks.Network, x: Any) -> jax.ShapeDtypeStruct:
  """The model's output shape on one example, with nothing computed."""
  one = jax.ShapeDtypeStruct((1, *np.shape(x)[1:]), np.asarray(x).dtype)

  def forward(key, x):
    params, state = network.init(key, x)
    return network.apply(params, state, x, None, {})[0]

  return jax.eval_shape(forward, jax.random.key(0), one)


def _labels(data: Any) -> Any:
  return data['y']


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-entry softmax cross-entropy and correctness (float32)."""
  logits = logits.astype(jnp.float32)
  # A one-hot product, not a gather: the gather's gradient is a scatter,
  # which XLA's CPU backend compiles and runs slowly.
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  losses = jax.nn.logsumexp(logits, axis=-1) - jnp.sum(onehot * logits, axis=-1)
  return losses, (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class _Classify:
  network: _networks.Network

  def init(self, key, batch):
    return self.network.init(key, batch['x'])

  def __call__(self, params, batch, key, hp, *, weight=None, state=None):
    logits, state = self.network.apply(params, state, batch['x'], key, hp)
    losses, correct = _cross_entropy(logits, batch['y'])
    return mean(losses, weight), {'accuracy': mean(correct, weight)}, state

  def check(self, data):
    x, y = _rows(data, 'x', 'classifier'), _rows(data, 'y', 'classifier')
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(
          f"classifier: data['y'] must be a vector of integer class labels; got "
          f'shape {y.shape} and dtype {y.dtype}.'
      )
    if len(y) and y.min() < 0:
      raise ValueError(f"classifier: data['y'] must hold labels 0, 1, ...; got {y.min()}.")
    out = _outputs(self.network, x)
    if out.ndim != 2 or (len(y) and out.shape[-1] <= y.max()):
      raise ValueError(
          f'classifier: the model must output one logit per class ({y.max() + 1} '
          f'classes); it outputs shape {out.shape[1:]} per example.'
      )


@dataclasses.dataclass(frozen=True)
class _Regress:
  network: _networks.Network

  def init(self, key, batch):
    return self.network.init(key, batch['x'])

  def __call__(self, params, batch, key, hp, *, weight=None, state=None):
    pred, state = self.network.apply(params, state, batch['x'], key, hp)
    y = batch['y'].astype(jnp.float32)
    if y.ndim == 1:
      y = y[:, None]
    pred = pred.astype(jnp.float32).reshape(y.shape)
    w = jnp.ones(y.shape[0], jnp.float32) if weight is None else weight
    squares = (pred - y) ** 2
    total = jnp.maximum(jnp.sum(w), jnp.finfo(jnp.float32).tiny)
    centre = jnp.sum(w[:, None] * y, axis=0) / total
    residual = jnp.sum(w[:, None] * squares, axis=0)
    spread = jnp.sum(w[:, None] * (y - centre[None, :]) ** 2, axis=0)
    # As sklearn.metrics.r2_score: a constant target scores 1 if fitted
    # exactly, else 0; outputs are averaged uniformly.
    safe = jnp.where(spread > 0, spread, 1.0)
    r2 = jnp.where(spread > 0, 1.0 - residual / safe, jnp.where(residual == 0, 1.0, 0.0))
    return mean(squares, weight), {'r2': jnp.mean(r2)}, state

  def check(self, data):
    x, y = _rows(data, 'x', 'regressor'), _rows(data, 'y', 'regressor')
    if y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.number):
      raise ValueError(
          f"regressor: data['y'] must be numeric targets of shape (n,) or (n, k); "
          f'got shape {y.shape} and dtype {y.dtype}.'
      )
    targets = 1 if y.ndim == 1 else y.shape[1]
    out = _outputs(self.network, x)
    if out.ndim != 2 or out.shape[-1] != targets:
      raise ValueError(
          f'regressor: the model must output {targets} value(s) per example; it '
          f'outputs shape {out.shape[1:]}.'
      )


@dataclasses.dataclass(frozen=True)
class _Predict:
  network: _networks.Network

  def init(self, key, batch):
    return self.network.init(key, batch['tokens'][:, :-1])

  def __call__(self, params, batch, key, hp, *, weight=None, state=None):
    tokens = batch['tokens']
    logits, state = self.network.apply(params, state, tokens[:, :-1], key, hp)
    losses, correct = _cross_entropy(logits, tokens[:, 1:])
    return mean(losses, weight), {'accuracy': mean(correct, weight)}, state

  def check(self, data):
    tokens = _rows(data, 'tokens', 'language_model')
    if tokens.ndim != 2 or tokens.shape[1] < 2 or not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(
          "language_model: data['tokens'] must be int token rows of shape (n, T + 1), "
          f'T >= 1; got shape {tokens.shape} and dtype {tokens.dtype}.'
      )
    out = _outputs(self.network, tokens[:, :-1])
    if len(tokens) and (out.ndim != 3 or out.shape[-1] <= tokens.max() or tokens.min() < 0):
      raise ValueError(
          f'language_model: the model must output one logit per token id at each '
          f'position (ids 0 .. {tokens.max()}); it outputs shape {out.shape[1:]}.'
      )


@dataclasses.dataclass(frozen=True)
class _Method:
  """``impl.<name>`` compared by value: bound methods compare their objects
  by identity, and equal tasks must share compiled programs."""

  impl: Any
  name: str

  def __call__(self, *args: Any) -> Any:
    return getattr(self.impl, self.name)(*args)


def _task(impl: Any, **kwargs: Any) -> Task:
  return Task(
      init=_Method(impl, 'init'),
      loss=impl,
      hyperparameters=impl.network.hyperparameters,
      check=_Method(impl, 'check'),
      **kwargs,
  )


def classifier(model: Any) -> Task:
  r"""Softmax cross-entropy classification: data ``{'x': inputs, 'y': labels}``.

  .. math::

    \ell(x, y) = \log \sum_c e^{f(x)_c} - f(x)_y

  where :math:`f(x)` are the model's logits for input :math:`x` and
  :math:`y \in \{0, \dots, C-1\}` the integer label. The metric is
  ``accuracy``; a fold count makes stratified folds (:func:`stratified_folds`).

  Args:
    model: a ``flax.linen`` Module, or a function ``rngs -> nnx.Module``,
      mapping a batch of ``x`` to logits; see :mod:`wdax.sweep._networks` for
      BatchNorm, dropout and the keywords it may take.

  Returns:
    A :class:`Task`.

  Examples:
    >>> from wdax import sweep
    >>> task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))
    >>> task.hyperparameters, task.folds
    (('dropout',), 'stratified')
  """
  return _task(_Classify(_networks.Network.of(model)), folds='stratified', labels=_labels)


def regressor(model: Any) -> Task:
  r"""Mean squared error regression: data ``{'x': inputs, 'y': targets}``.

  .. math::

    \ell(x, y) = \frac{1}{K} \sum_{k=1}^{K} (f(x)_k - y_k)^2, \qquad
    R^2 = \frac{1}{K} \sum_{k} \Bigl(1 - \frac{\sum_i (f(x_i)_k - y_{ik})^2}
    {\sum_i (y_{ik} - \bar y_k)^2}\Bigr)

  where :math:`f(x)` is the model's output, :math:`y` the target with
  :math:`K` entries (``y`` of shape ``(n,)`` has one) and :math:`\bar y_k`
  the mean target over the examples scored. The metric is ``r2``, the
  coefficient of determination as ``sklearn.metrics.r2_score`` computes it on
  the same examples; a fold count makes shuffled folds.

  Args:
    model: as for :func:`classifier`, outputting ``K`` values per example.

  Returns:
    A :class:`Task`.

  Examples:
    >>> from wdax import sweep
    >>> sweep.regressor(sweep.MLP(hidden=(8,), outputs=1)).folds
    'shuffled'
  """
  return _task(_Regress(_networks.Network.of(model)))


def language_model(model: Any) -> Task:
  r"""Next-token prediction: data ``{'tokens': rows}`` of int token ids.

  .. math::

    \ell(t) = \frac{1}{T} \sum_{j=1}^{T} \Bigl(\log \sum_v e^{f(t_{<j})_v} -
    f(t_{<j})_{t_j}\Bigr)

  where :math:`t = (t_0, \dots, t_T)` is a row of ``tokens`` and
  :math:`f(t_{<j})` the model's logits at position :math:`j - 1`: the model
  reads ``tokens[:, :-1]`` and outputs logits of shape ``(n, T, vocab)``
  (causally masked). The metric is ``accuracy``, the fraction of next tokens
  predicted; a fold count makes contiguous folds, so a fold is a stretch of
  rows in order. Token ids stay integers.

  Args:
    model: as for :func:`classifier`, e.g.
      ``TinyTransformer(vocab=V, classes=None, positions=T)``.

  Returns:
    A :class:`Task`.

  Examples:
    >>> from wdax import sweep
    >>> model = sweep.TinyTransformer(vocab=16, width=8, heads=2, blocks=1,
    ...                               classes=None, positions=8)
    >>> sweep.language_model(model).folds
    'contiguous'
  """
  return _task(_Predict(_networks.Network.of(model)), folds='contiguous')
