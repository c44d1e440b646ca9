"""Grid searches written by hand in JAX: what ``wdax.sweep.select`` is timed against.

Each trains one model per (rate, fold), one after another, chooses the rate
by the mean validation loss (or metric) over the folds, and refits it on the
whole training set, with the same model, ``wdax.adamw`` and Flax's decay mask
as the sweep:

* :func:`step_loop`: a ``jax.jit``-compiled optax step called from Python
  over epochs and minibatches, the minibatches sliced with numpy (the rate is
  an argument, so the step compiles once per minibatch shape);
* :func:`scan_loop`: each training one ``jax.jit`` program, a ``lax.scan``
  over every minibatch of every epoch, the orders of visit drawn on the host
  first and the rate traced, so it compiles once for all rates and folds
  (and once more for the refit, whose epochs hold more minibatches). It
  visits the examples in the orders ``wdax.sweep.grid`` documents, so it
  trains exactly what the sweep trains;
* :func:`naive_loop`: the step loop as the Flax examples write it, the
  optimiser a static field of a ``TrainState``, which compiles the step anew
  for every training.

Import this module after setting ``XLA_FLAGS``: it imports JAX.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import wdax
from wdax import sweep

# One mask for every run: equal settings then share compiled programs.
MASK = wdax.masks.flax_default()


@dataclasses.dataclass(frozen=True)
class Problem:
  """What the baselines train: an MLP, and classification or regression.

  ``kind`` is ``'classify'`` (softmax cross-entropy, metric accuracy) or
  ``'regress'`` (squared error, metric :math:`R^2` as scikit-learn computes
  it), the losses of ``sweep.classifier`` and ``sweep.regressor``.
  """

  kind: str
  hidden: int
  outputs: int
  lr: float
  epochs: int
  batch_size: int

  @property
  def model(self):
    return sweep.MLP(hidden=(self.hidden,), outputs=self.outputs)

  def losses(self, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example losses."""
    out = self.model.apply({'params': params}, x)
    if self.kind == 'classify':
      return optax.softmax_cross_entropy_with_integer_labels(out, y)
    return (out[:, 0] - y) ** 2

  def optimizer(self, rate: Any) -> optax.GradientTransformation:
    return wdax.adamw(self.lr, weight_decay=rate, mask=MASK)


def _weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
  return jnp.sum(weight * values) / jnp.maximum(jnp.sum(weight), jnp.finfo(jnp.float32).tiny)


@functools.cache
def evaluator(problem: Problem) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """``(params, x, y, weight) -> (loss, metric)`` over the rows weighted 1,
  jitted once: one program for every fold's validation examples."""

  @jax.jit
  def evaluate(params, x, y, weight):
    out = problem.model.apply({'params': params}, x)
    if problem.kind == 'classify':
      losses = optax.softmax_cross_entropy_with_integer_labels(out, y)
      return _weighted_mean(losses, weight), _weighted_mean(jnp.argmax(out, -1) == y, weight)
    squares = (out[:, 0] - y) ** 2
    centre = _weighted_mean(y, weight)
    spread = jnp.sum(weight * (y - centre) ** 2)
    return _weighted_mean(squares, weight), 1.0 - jnp.sum(weight * squares) / spread

  return evaluate


def grid_search(problem: Problem, data: tuple, rates: np.ndarray, fold_ids: np.ndarray, criterion: str, train: Callable) -> dict:
  """One ``train(mask, rate)`` per rate and fold, one after another; the
  rate with the lowest mean validation loss (``criterion='loss'``) or the
  highest mean metric, ties going to the lower loss, as ``wdax.sweep``
  chooses; then its refit on every training example and the test metric."""
  x_train, x_test, y_train, y_test = data
  evaluate = evaluator(problem)
  folds = int(fold_ids.max()) + 1
  scores = np.zeros((len(rates), folds, 2))
  for i, rate in enumerate(rates):
    for k in range(folds):
      params = train(fold_ids != k, rate)
      weight = (fold_ids == k).astype(np.float32)
      scores[i, k] = evaluate(params, x_train, y_train, weight)
  loss, metric = scores.mean(1).T
  best = int(np.argmin(loss)) if criterion == 'loss' else int(np.lexsort((loss, -metric))[0])
  params = train(np.ones(len(y_train), bool), rates[best])
  ones = np.ones(len(y_test), np.float32)
  test = float(evaluate(params, x_test, y_test, ones)[1])
  return {
      'rate': float(rates[best]),
      'cv_metric': float(metric[best]),
      'test_metric': test,
      'cv_losses': loss.tolist(),
  }


@functools.cache
def _step(problem: Problem):
  @jax.jit
  def step(params, opt_state, xb, yb, rate):
    grads = jax.grad(lambda p: problem.losses(p, xb, yb).mean())(params)
    updates, opt_state = problem.optimizer(rate).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return step


def step_loop(problem: Problem, data: tuple, rates: np.ndarray, fold_ids: np.ndarray, criterion: str) -> dict:
  """The grid search with a jitted step called from Python."""
  x_train, _, y_train, _ = data
  step, model, size = _step(problem), problem.model, problem.batch_size

  def train(mask, rate):
    x, y = x_train[mask], y_train[mask]
    rng = np.random.default_rng(0)
    params = model.init(jax.random.key(0), x[:1])['params']
    opt_state = problem.optimizer(float(rate)).init(params)
    rate = jnp.float32(rate)
    for _ in range(problem.epochs):
      order = rng.permutation(len(y))
      for start in range(0, len(y), size):
        batch = order[start : start + size]
        params, opt_state = step(params, opt_state, x[batch], y[batch], rate)
    return params

  return grid_search(problem, data, rates, fold_ids, criterion, train)


def visit_orders(seed: int, epochs: int, mask: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """The minibatches of every epoch as ``(index, weight)``, each of shape
  ``(epochs * steps, batch_size)``: epoch ``e`` visits the examples ``mask``
  marks in increasing order of ``np.random.default_rng([seed, e]).random(n)``
  (``wdax.sweep.grid``'s documented order), the last minibatch padded with
  weight 0."""
  n, chosen = len(mask), np.flatnonzero(mask)
  steps = -(-len(chosen) // batch_size)
  index = np.zeros((epochs, steps * batch_size), np.int32)
  weight = np.zeros((epochs, steps * batch_size), np.float32)
  for e in range(epochs):
    noise = np.random.default_rng([seed, e]).random(n)
    index[e, : len(chosen)] = chosen[np.argsort(noise[chosen], kind='stable')]
    weight[e, : len(chosen)] = 1.0
  shape = (epochs * steps, batch_size)
  return index.reshape(shape), weight.reshape(shape)


@functools.cache
def _scanned(problem: Problem):
  @jax.jit
  def train(params, x, y, index, weight, rate):
    tx = problem.optimizer(rate)

    def step(carry, minibatch):
      params, opt_state = carry
      i, w = minibatch
      objective = lambda p: _weighted_mean(problem.losses(p, x[i], y[i]), w)  # noqa: E731
      updates, opt_state = tx.update(jax.grad(objective)(params), opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), (index, weight))
    return params

  return train, jax.jit(problem.model.init)


def scan_loop(problem: Problem, data: tuple, rates: np.ndarray, fold_ids: np.ndarray, criterion: str) -> dict:
  """The grid search with each training one ``lax.scan`` program."""
  x_train, _, y_train, _ = data
  train_scan, init = _scanned(problem)
  x, y = jax.device_put(x_train), jax.device_put(y_train)
  params = init(jax.random.key(0), x_train[:1])['params']

  def train(mask, rate):
    index, weight = visit_orders(0, problem.epochs, mask, problem.batch_size)
    return train_scan(params, x, y, index, weight, jnp.float32(rate))

  return grid_search(problem, data, rates, fold_ids, criterion, train)


def naive_loop(problem: Problem, data: tuple, rates: np.ndarray, fold_ids: np.ndarray, criterion: str) -> dict:
  """The step loop with the optimiser in a Flax ``TrainState``: ``tx`` is a
  static field, so each training compiles its step."""
  from flax.training import train_state

  x_train, _, y_train, _ = data
  model, size = problem.model, problem.batch_size

  @jax.jit
  def step(state, xb, yb):
    grads = jax.grad(lambda p: problem.losses(p, xb, yb).mean())(state.params)
    return state.apply_gradients(grads=grads)

  def train(mask, rate):
    x, y = x_train[mask], y_train[mask]
    rng = np.random.default_rng(0)
    state = train_state.TrainState.create(
        apply_fn=model.apply,
        params=model.init(jax.random.key(0), x[:1])['params'],
        tx=problem.optimizer(float(rate)),
    )
    for _ in range(problem.epochs):
      order = rng.permutation(len(y))
      for start in range(0, len(y), size):
        batch = order[start : start + size]
        state = step(state, x[batch], y[batch])
    return state.params

  return grid_search(problem, data, rates, fold_ids, criterion, train)


LOOPS = {'scan': scan_loop, 'loop': step_loop, 'loop (naive)': naive_loop}
"""The hand-written grid searches by the names the benchmarks report."""
