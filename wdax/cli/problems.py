"""What ``wdax sweep`` trains for each kind of data: the split, the model and
task, and the metric it chooses by.

The data sets and their split, the tasks and the models are
:mod:`wdax.sweep`'s; this module only picks them for the command line's
three problems:

==============  ================  ======================  ===================
problem         held out          model and task          scored by
==============  ================  ======================  ===================
classification  stratified, then  ``sweep.MLP``,          accuracy
                standardised      ``sweep.classifier``
regression      shuffled, then    ``sweep.MLP``,          R², on standardised
                standardised      ``sweep.regressor``     targets
language        the end, in       ``sweep.TinyTransformer``  perplexity,
                order             ``sweep.language_model``   exp(loss)
==============  ================  ======================  ===================
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from wdax import masks
from wdax import sweep
from wdax.cli import _memory
from wdax.cli import loading
from wdax.cli.errors import BadInput
from wdax.cli.requests import SweepRequest
from wdax.sweep import datasets

# The language model's shape: rows of this many tokens, read by one block
# (a small model on a small corpus, so that the sweep stays quick).
CONTEXT = 32
BLOCKS = 1
HEADS = 4


@dataclasses.dataclass(frozen=True)
class Split:
  """The data as the sweep takes it, held-out part apart.

  Attributes:
    train: the training data, ``{'x', 'y'}`` or ``{'tokens'}``.
    test: the held-out data, alike.
    about: what results.json and the first line say of the data.
    outputs: the model's outputs per example (classes, targets or the
      vocabulary).
  """

  train: dict[str, Any]
  test: dict[str, Any]
  about: dict[str, Any]
  outputs: int

  @property
  def examples(self) -> int:
    """The training examples (rows)."""
    return len(next(iter(self.train.values())))


def model_name(request: SweepRequest) -> str:
  """The model, as the output names it."""
  if request.problem == 'language':
    return f'TinyTransformer(width {request.hidden[0]}, {BLOCKS} block, {HEADS} heads)'
  return f'MLP({", ".join(map(str, request.hidden))})'


def _task(request: SweepRequest, outputs: int) -> sweep.Task:
  """The :class:`wdax.sweep.Task` of the request's problem, with its
  built-in model."""
  if request.problem == 'language':
    model = sweep.TinyTransformer(
        vocab=datasets.VOCAB, width=request.hidden[0], heads=HEADS, blocks=BLOCKS,
        classes=None, positions=CONTEXT,
    )
    return sweep.language_model(model)
  mlp = sweep.MLP(hidden=request.hidden, outputs=outputs)
  if request.problem == 'regression':
    return sweep.regressor(mlp)
  return sweep.classifier(mlp)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a sweep request trains, resolved once from the request and its
  data (:func:`resolve`).

  Attributes:
    split: the data, held-out part apart.
    task: the :class:`wdax.sweep.Task`, with its built-in model.
    model: the model, as the output names it.
    metric: the validation metric the sweep chooses by.
    mode: ``'min'`` or ``'max'``, the direction of ``metric``.
    score: the metric besides the loss, ``'accuracy'`` or ``'r2'``.
    batch_size: the minibatch size: the request's, at most the training
      split (the sweep would pad every batch to the size asked for).
  """

  split: Split
  task: sweep.Task
  model: str
  metric: str
  mode: str
  score: str
  batch_size: int

  def optimizer(self, request: SweepRequest, kind: str) -> sweep.Kind:
    """The optimiser of decay ``kind`` at the request's first learning
    rate; masks and kinds compare by value, so a second run in the same
    process makes an equal optimiser, and reuses the compiled programs."""
    return sweep.kind(kind, lr=request.lr[0], mask=masks.flax_default())


def resolve(request: SweepRequest, data: loading.Data, device: Any) -> Setup:
  """Splits ``data`` as the request's problem wants it (:func:`split`),
  picks the task and the metric, and refuses a sweep whose smallest chunk
  cannot fit on ``device``.

  Examples:
    >>> import jax
    >>> from wdax.cli import loading, problems
    >>> from wdax.cli.requests import SweepRequest
    >>> request = SweepRequest.of('wine', rates='1', folds=2, hidden=(8,))
    >>> setup = problems.resolve(request, loading.load('wine'), jax.devices()[0])
    >>> setup.model, setup.metric, setup.mode, setup.score, setup.split.outputs
    ('MLP(8)', 'val_loss', 'min', 'accuracy', 3)
  """
  held = split(request, data)
  metric, mode = request.metric
  setup = Setup(
      split=held, task=_task(request, held.outputs), model=model_name(request),
      metric=metric, mode=mode, score=request.score,
      batch_size=min(request.batch_size, held.examples),
  )
  _check_fits(request, setup, device)
  return setup


def _device_memory(device: Any) -> int | None:
  """The bytes of memory ``device`` has: the host's RAM for a CPU."""
  if device.platform == 'cpu':
    try:
      return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
      return None
  stats = device.memory_stats() or {}
  return stats.get('bytes_limit')


def _check_fits(request: SweepRequest, setup: Setup, device: Any) -> None:
  """Refuses a sweep whose smallest chunk, as the sweep estimates it, needs
  more memory than ``device`` has: XLA would fail to allocate, or wait on an
  allocation forever, after minutes of work."""
  have = _device_memory(device)
  if have is None:
    return
  need = _memory.smallest_chunk(
      setup.task, setup.split.train, request.space, setup.optimizer(request, request.kinds[0]),
      seeds=request.seeds, batch_size=setup.batch_size, folds=request.folds,
      fold_seed=request.seed, device=device,
  )
  if need > have:
    hidden = ','.join(map(str, request.hidden))
    raise BadInput(
        f'--hidden {hidden} --seeds {request.seeds}: training {setup.model} on '
        f'{setup.split.about.get("features", CONTEXT)} features needs at least {need / 2**30:.3g} GiB, more than the '
        f'{have / 2**30:.3g} GiB of memory of a {device.platform} device'
    )


def split(request: SweepRequest, data: loading.Data) -> Split:
  """Holds out ``--test-size`` of the data as the problem wants it, and
  standardises tables; refuses data too small for ``--folds``."""
  if request.problem == 'language':
    return _text(request, data)
  if request.problem == 'regression':
    return _regression(request, data)
  return _classes(request, data)

def _standardized(data: loading.Data, x_train, x_test):
  x_train, x_test = sweep.standardize(x_train, x_test)
  far = ~np.isfinite(x_test).all(axis=0)
  if far.any():
    raise BadInput(
        f'{data.source}: {data.column(int(np.argmax(far)))}: a held-out value is too far '
        'from the training values to standardise in float32'
    )
  return x_train, x_test


def _classes(request: SweepRequest, data: loading.Data) -> Split:
  source = data.source
  names, codes = np.unique(data.labels, return_inverse=True)
  if data.classes is not None:
    names = np.asarray(data.classes)[names]
  if len(names) < 2:
    raise BadInput(f'{source}: the labels have a single class, {loading.label(names[0])}')
  train, test = sweep.stratified_split(codes, request.test_size, seed=request.seed)
  y_train, y_test = codes[train].astype(np.int32), codes[test].astype(np.int32)
  counts = np.bincount(y_train, minlength=len(names))
  if counts.min() < request.folds:
    c = int(np.argmin(counts))
    raise BadInput(
        f'{source}: class {loading.label(names[c])} has {counts[c]} training '
        f'example{"" if counts[c] == 1 else "s"}, fewer than --folds {request.folds}'
    )
  x_train, x_test = _standardized(data, data.x[train], data.x[test])
  about = {
      'source': source, 'problem': request.problem, 'train': int(len(train)),
      'test': int(len(test)), 'features': int(data.x.shape[1]),
      'classes': [str(n) for n in names],
  }
  return Split({'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}, about, len(names))


def _enough(request: SweepRequest, source: str, train: int, what: str) -> None:
  if train < request.folds:
    raise BadInput(
        f'{source}: {train} training {what}, fewer than --folds {request.folds}; '
        'lower --folds or --test-size'
    )


def _regression(request: SweepRequest, data: loading.Data) -> Split:
  train, test = sweep.shuffled_split(len(data.x), request.test_size, seed=request.seed)
  _enough(request, data.source, len(train), 'examples')
  x_train, x_test = _standardized(data, data.x[train], data.x[test])
  # The targets too, with the training statistics: R^2 is the same in
  # either units, and Adam's default steps suit targets of unit scale.
  y_train, y_test = sweep.standardize(data.labels[train, None], data.labels[test, None])
  about = {
      'source': data.source, 'problem': request.problem, 'train': int(len(train)),
      'test': int(len(test)), 'features': int(data.x.shape[1]),
      'target_mean': float(data.labels[train].mean()),
      'target_std': float(data.labels[train].std()),
  }
  return Split(
      {'x': x_train, 'y': y_train[:, 0]}, {'x': x_test, 'y': y_test[:, 0]}, about, 1
  )


def _text(request: SweepRequest, data: loading.Data) -> Split:
  tokens = data.x
  train, test = sweep.contiguous_split(len(tokens), request.test_size)
  _enough(request, data.source, len(train), f'rows of {tokens.shape[1]} tokens')
  about = {
      'source': data.source, 'problem': request.problem, 'train': int(len(train)),
      'test': int(len(test)), 'tokens_per_row': int(tokens.shape[1]),
      'vocabulary': datasets.VOCAB,
  }
  return Split({'tokens': tokens[train]}, {'tokens': tokens[test]}, about, datasets.VOCAB)
