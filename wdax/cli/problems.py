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

from wdax.cli import loading
from wdax.cli.errors import BadInput
from wdax.cli.parsing import SCORES

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


def score(args) -> str:
  """The metric besides the loss: ``accuracy`` or ``r2``."""
  return SCORES[args.problem]


def metric(args) -> tuple[str, str]:
  """The validation metric and mode the sweep chooses by."""
  if args.criterion in ('loss', 'perplexity'):
    return 'val_loss', 'min'
  return f'val_{args.criterion}', 'max'


def model_name(args) -> str:
  """The model, as the output names it."""
  if args.problem == 'language':
    return f'TinyTransformer(width {args.hidden[0]}, {BLOCKS} block, {HEADS} heads)'
  return f'MLP({", ".join(map(str, args.hidden))})'


def task(args, split: Split) -> Any:
  """The :class:`wdax.sweep.Task` of ``args.problem``, with its built-in model."""
  from wdax import sweep

  if args.problem == 'language':
    from wdax.sweep import datasets

    model = sweep.TinyTransformer(
        vocab=datasets.VOCAB, width=args.hidden[0], heads=HEADS, blocks=BLOCKS,
        classes=None, positions=CONTEXT,
    )
    return sweep.language_model(model)
  model = sweep.MLP(hidden=args.hidden, outputs=split.outputs)
  if args.problem == 'regression':
    return sweep.regressor(model)
  return sweep.classifier(model)


def _memory(device) -> int | None:
  """The bytes of memory ``device`` has: the host's RAM for a CPU."""
  if device.platform == 'cpu':
    try:
      return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
      return None
  stats = device.memory_stats() or {}
  return stats.get('bytes_limit')


def _check_fits(args, features: int, outputs: int, examples: int, device) -> None:
  """Refuses a sweep whose smallest part cannot fit on ``device``.

  The bound is low: for one training, float32 parameters, gradients and
  Adam's two moments (16 bytes a parameter) and the outputs of every layer
  on the evaluation pass over all examples; and the initial parameters of
  every seed, which the sweep holds at once. Past it, XLA would fail to
  allocate, or wait on an allocation forever, after minutes of work.
  """
  have = _memory(device)
  if have is None:
    return
  if args.problem == 'language':
    width, vocab = args.hidden[0], outputs
    # Embeddings, positions, the output layer, and per block attention (4
    # W x W) and the MLP (8 W x W); outputs of ~12 W + V per position.
    parameters = 2 * vocab * width + CONTEXT * width + BLOCKS * 12 * width * width
    layers = CONTEXT * (12 * width * BLOCKS + vocab)
  else:
    widths = [features, *args.hidden, outputs]
    parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    layers = sum(widths[1:])
  need = 4 * parameters * (4 + args.seeds) + 4 * examples * layers
  if need > have:
    hidden = ','.join(map(str, args.hidden))
    raise BadInput(
        f'--hidden {hidden} --seeds {args.seeds}: training {model_name(args)} on '
        f'{features} features needs at least {need / 2**30:.3g} GiB, more than the '
        f'{have / 2**30:.3g} GiB of memory of a {device.platform} device'
    )


def split(args, data: loading.Data, device) -> Split:
  """Holds out ``--test-size`` of the data as the problem wants it, and
  standardises tables; refuses data too small for ``--folds`` or a model too
  large for ``device``."""
  if args.problem == 'language':
    return _text(args, data, device)
  if args.problem == 'regression':
    return _regression(args, data, device)
  return _classes(args, data, device)


def _standardized(data: loading.Data, x_train, x_test):
  import numpy as np

  from wdax import sweep

  x_train, x_test = sweep.standardize(x_train, x_test)
  far = ~np.isfinite(x_test).all(axis=0)
  if far.any():
    raise BadInput(
        f'{data.source}: {data.column(int(np.argmax(far)))}: a held-out value is too far '
        'from the training values to standardise in float32'
    )
  return x_train, x_test


def _classes(args, data: loading.Data, device) -> Split:
  import numpy as np

  from wdax import sweep

  source = data.source
  names, codes = np.unique(data.labels, return_inverse=True)
  if data.classes is not None:
    names = np.asarray(data.classes)[names]
  if len(names) < 2:
    raise BadInput(f'{source}: the labels have a single class, {loading.label(names[0])}')
  train, test = sweep.stratified_split(codes, args.test_size, seed=args.seed)
  y_train, y_test = codes[train].astype(np.int32), codes[test].astype(np.int32)
  counts = np.bincount(y_train, minlength=len(names))
  if counts.min() < args.folds:
    c = int(np.argmin(counts))
    raise BadInput(
        f'{source}: class {loading.label(names[c])} has {counts[c]} training '
        f'example{"" if counts[c] == 1 else "s"}, fewer than --folds {args.folds}'
    )
  _check_fits(args, data.x.shape[1], len(names), len(y_train), device)
  x_train, x_test = _standardized(data, data.x[train], data.x[test])
  about = {
      'source': source, 'problem': args.problem, 'train': int(len(train)),
      'test': int(len(test)), 'features': int(data.x.shape[1]),
      'classes': [str(n) for n in names],
  }
  return Split({'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}, about, len(names))


def _enough(args, source: str, train: int, what: str) -> None:
  if train < args.folds:
    raise BadInput(
        f'{source}: {train} training {what}, fewer than --folds {args.folds}; '
        'lower --folds or --test-size'
    )


def _regression(args, data: loading.Data, device) -> Split:

  from wdax import sweep

  train, test = sweep.shuffled_split(len(data.x), args.test_size, seed=args.seed)
  _enough(args, data.source, len(train), 'examples')
  _check_fits(args, data.x.shape[1], 1, len(train), device)
  x_train, x_test = _standardized(data, data.x[train], data.x[test])
  # The targets too, with the training statistics: R^2 is the same in
  # either units, and Adam's default steps suit targets of unit scale.
  y_train, y_test = sweep.standardize(data.labels[train, None], data.labels[test, None])
  about = {
      'source': data.source, 'problem': args.problem, 'train': int(len(train)),
      'test': int(len(test)), 'features': int(data.x.shape[1]),
      'target_mean': float(data.labels[train].mean()),
      'target_std': float(data.labels[train].std()),
  }
  return Split(
      {'x': x_train, 'y': y_train[:, 0]}, {'x': x_test, 'y': y_test[:, 0]}, about, 1
  )


def _text(args, data: loading.Data, device) -> Split:
  from wdax import sweep
  from wdax.sweep import datasets

  tokens = data.x
  train, test = sweep.contiguous_split(len(tokens), args.test_size)
  _enough(args, data.source, len(train), f'rows of {tokens.shape[1]} tokens')
  _check_fits(args, CONTEXT, datasets.VOCAB, len(train), device)
  about = {
      'source': data.source, 'problem': args.problem, 'train': int(len(train)),
      'test': int(len(test)), 'tokens_per_row': int(tokens.shape[1]),
      'vocabulary': datasets.VOCAB,
  }
  return Split({'tokens': tokens[train]}, {'tokens': tokens[test]}, about, datasets.VOCAB)
