"""A job: the task, the optimiser and the settings the compiled programs
close over, and what it computes for one configuration (a training step,
an evaluation, the minibatches of an epoch)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdax.sweep.tasks import Task


class Carry(NamedTuple):
  """The training state of configurations, stacked over them: what a
  segment of ``run`` starts from and returns."""

  params: Any
  opt_state: Any
  state: Any


@dataclasses.dataclass(frozen=True)
class Job:
  """Everything the compiled programs close over; none of it is traced."""

  task: Task
  optimizer: Callable[..., optax.GradientTransformation]
  to_optimizer: tuple[str, ...]
  names: tuple[str, ...]
  metrics: tuple[str, ...]
  batch_size: int
  full_batches: bool
  guard: bool

  def loss(self, params, state, batch, key, hp, weight):
    """``(loss, metrics, state)`` of the task's loss, whatever it takes."""
    kwargs = {}
    if self.task.weighted:
      kwargs['weight'] = weight
    if self.task.stateful:
      kwargs['state'] = state
    out = self.task.loss(params, batch, key, hp, **kwargs)
    if self.task.stateful:
      return out
    return (*out, state)

  def tx(self, hp) -> optax.GradientTransformation:
    return self.optimizer(**{n: hp[n] for n in self.to_optimizer})

  def init(self, key, batch):
    """``(params, state)`` from the task's ``init``."""
    out = self.task.init(key, batch)
    return out if self.task.stateful else (out, {})


def _vector(job: Job, loss, metrics) -> jax.Array:
  return jnp.stack([loss, *(metrics[m] for m in job.metrics)]).astype(jnp.float32)


def evaluator(job: Job) -> Callable[..., jax.Array]:
  """``(params, state, hp, data, weights) -> (W, 1 + M)``: the loss and each
  metric over the examples each row of ``weights`` (``(W, n)``) marks."""

  def weighted(params, state, hp, data, weights):
    def one(w):
      loss, metrics, _ = job.loss(params, state, data, None, hp, w)
      return _vector(job, loss, metrics)

    # The forward pass does not depend on the weights, so under this vmap
    # it runs once for every row of them.
    return jax.vmap(one)(weights)

  def per_example(params, state, hp, data, weights):
    def one(example):
      batch = jax.tree.map(lambda a: a[None], example)
      loss, metrics, _ = job.loss(params, state, batch, None, hp, None)
      return _vector(job, loss, metrics)

    values = jax.vmap(one)(data)
    return (weights @ values) / jnp.sum(weights, axis=1, keepdims=True)

  return weighted if job.task.weighted else per_example


def minibatches(job: Job, train_table: np.ndarray) -> np.ndarray:
  """Minibatches per epoch of each row of a training table: only full ones
  when ``job.full_batches``."""
  count = (train_table > 0).sum(axis=1)
  if job.full_batches:
    return count // job.batch_size
  return -(-count // job.batch_size)


def stepper(job: Job):
  """``(carry, batch, weight, key, hp) -> carry``: one training step of one
  configuration, ``carry`` a :class:`Carry`."""

  def step(carry: Carry, batch, weight, key, hp) -> Carry:
    params, opt_state, state = carry

    def objective(p):
      loss, _, new_state = job.loss(p, state, batch, key, hp, weight)
      return loss, new_state

    (_, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = job.tx(hp).update(grads, opt_state, params)
    return Carry(optax.apply_updates(params, updates), opt_state, state)

  return step
