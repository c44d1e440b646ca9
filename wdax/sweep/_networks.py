"""One interface over a linen Module and an NNX model, for the built-in tasks.

A :class:`Network` splits a model's variables in two: ``params``, which the
optimiser trains (and the decay may touch), and ``state``, everything else
(linen collections such as ``batch_stats``; NNX ``BatchStat`` and RNG
variables). ``state`` never reaches the optimiser, so it is never decayed:
a training step returns it as the model updated it, and evaluation reads it
(BatchNorm's running statistics) without changing it.

The model is called with the input and, when its ``__call__`` accepts them,
the keywords ``train`` (``True`` in a training step, ``False`` when
evaluating), ``deterministic`` (its negation, Flax's own name) and ``dropout`` (``hp['dropout']``, when the space sweeps it), and
for an NNX model ``rngs`` (an ``nnx.Rngs`` whose ``dropout`` stream is the
step's key). A linen model gets the step's key as its ``'dropout'`` RNG. An NNX
model is put in training mode (``model.train()``: dropout on, batch
statistics updated) for training steps and in evaluation mode
(``model.eval()``) otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

# Keywords a model may accept, passed by the built-in tasks.
_KEYWORDS = ('train', 'deterministic', 'dropout', 'rngs')


def _accepts(fn: Callable[..., Any]) -> frozenset[str]:
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return frozenset()
  names = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  return frozenset(names & set(_KEYWORDS))


@dataclasses.dataclass(frozen=True)
class Network:
  """A linen ``module`` or an NNX ``factory`` (``rngs -> nnx.Module``)."""

  module: nn.Module | None = None
  factory: Callable[[nnx.Rngs], nnx.Module] | None = None

  @classmethod
  def of(cls, model: Any) -> Network:
    if isinstance(model, nn.Module):
      return cls(module=model)
    if isinstance(model, type) and issubclass(model, (nn.Module, nnx.Module)):
      raise TypeError(
          f'model: got the class {model.__name__}; pass a linen module, e.g. '
          f'{model.__name__}(...), or a function rngs -> nnx.Module.'
      )
    if isinstance(model, nnx.Module):
      raise TypeError(
          'model: pass a function rngs -> nnx.Module (e.g. lambda rngs: '
          'MyModel(..., rngs=rngs)), not a built module: the sweep builds one '
          'per seed.'
      )
    if callable(model):
      return cls(factory=model)
    raise TypeError(
        f'model must be a flax.linen Module or a function rngs -> nnx.Module; '
        f'got {type(model).__name__}.'
    )

  @property
  def keywords(self) -> frozenset[str]:
    """The keywords of :data:`_KEYWORDS` the model's ``__call__`` accepts."""
    if self.module is not None:
      return _accepts(type(self.module).__call__) - {'rngs'}
    return _accepts(type(_graphs(self.factory)[0]).__call__)

  @property
  def hyperparameters(self) -> tuple[str, ...]:
    """The space names the model reads: ``('dropout',)`` if it takes one."""
    return ('dropout',) if 'dropout' in self.keywords else ()

  def _kwargs(self, hp: dict[str, Any], train: bool, key: Any) -> dict[str, Any]:
    accepted, out = self.keywords, dict[str, Any]()
    if 'train' in accepted:
      out['train'] = train
    if 'deterministic' in accepted:
      out['deterministic'] = not train
    if 'dropout' in accepted and 'dropout' in hp:
      out['dropout'] = hp['dropout']
    if 'rngs' in accepted and key is not None:
      out['rngs'] = nnx.Rngs(dropout=key)
    return out

  def init(self, key: jax.Array, x: Any) -> tuple[Any, Any]:
    """``(params, state)`` of a fresh model, initialised from ``key``."""
    if self.module is not None:
      variables = dict(self.module.init(key, x, **self._kwargs({}, False, None)))
      params = variables.pop('params', {})
      return params, variables
    assert self.factory is not None  # a Network holds a module or a factory
    _, params, *rest = nnx.split(self.factory(nnx.Rngs(key)), nnx.Param, ...)
    state = rest[0]  # what ``...`` takes: everything but the parameters
    return nnx.as_pure(params), nnx.as_pure(state)

  def apply(
      self, params: Any, state: Any, x: Any, key: Any, hp: dict[str, Any]
  ) -> tuple[Any, Any]:
    """``(outputs, new_state)``: a training call when ``key`` is not ``None``
    (dropout on, statistics updated), else an evaluation call."""
    train = key is not None
    kwargs = self._kwargs(hp, train, key)
    if self.module is not None:
      variables = {'params': params, **state}
      rngs = {'dropout': key} if train else None
      if train and state:
        out, new = self.module.apply(
            variables, x, rngs=rngs, mutable=list(state), **kwargs
        )
        return out, {**state, **new}
      return self.module.apply(variables, x, rngs=rngs, **kwargs), state
    _, train_graph, eval_graph = _graphs(self.factory)
    model = nnx.merge(train_graph if train else eval_graph, params, state)
    out = model(x, **kwargs)
    if not train:
      return out, state
    return out, nnx.as_pure(nnx.state(model, nnx.Not(nnx.Param)))


@functools.lru_cache(maxsize=32)
def _graphs(factory: Callable[[nnx.Rngs], nnx.Module]) -> tuple[Any, Any, Any]:
  """An abstract model from ``factory``, and its graph definitions in
  training and in evaluation mode (their state is the same)."""

  def build():
    model = factory(nnx.Rngs(0))
    if not isinstance(model, nnx.Module):
      raise TypeError(
          f'model: the function must return an nnx.Module; it returned '
          f'{type(model).__name__}.'
      )
    return model

  model = nnx.eval_shape(build)
  model.train()
  train_graph = nnx.split(model, nnx.Param, ...)[0]
  model.eval()
  eval_graph = nnx.split(model, nnx.Param, ...)[0]
  return model, train_graph, eval_graph
