r"""Choosing weight decay, and any hyperparameter beside it, by cross-validation.

:func:`grid` trains one model per point of a hyperparameter space, fold and
seed, all in one compiled, ``vmap``\ ped program sharded over the devices;
:func:`fit` trains one point on the whole training set; :func:`select` chains
them. What is trained is a :class:`Task` (:func:`classifier`,
:func:`regressor`, :func:`language_model`, or your own ``init`` and
``loss``), with any optimiser built from the point's values (:func:`kind`
makes the named decay kinds).

::

  from wdax import sweep

  task = sweep.classifier(sweep.MLP(hidden=(256,), outputs=10))
  result = sweep.grid(
      task, {'x': x, 'y': y}, {'rate': [0.0, 1e-3, 1e-2, 1e-1], 'lr': [1e-3, 3e-3]},
      optimizer=lambda rate, lr: wdax.adamw(lr, weight_decay=rate, mask=wdax.masks.flax_default()),
      folds=5, epochs=20, batch_size=32)
  point = result.best('val_loss')
  refit = sweep.fit(task, {'x': x, 'y': y}, point, optimizer=..., test=test_data)

The public modules, one concept each: :mod:`~wdax.sweep.tasks` (the task
contract and built-in tasks), :mod:`~wdax.sweep.models` (built-in models),
:mod:`~wdax.sweep.space` (spaces and points), :mod:`~wdax.sweep.kinds` (named
decay kinds), :mod:`~wdax.sweep.folds` (data, folds and held-out splits),
:mod:`~wdax.sweep.scaling` (standardising features),
:mod:`~wdax.sweep.datasets` (built-in data sets),
:mod:`~wdax.sweep.settings` (the entry points' settings),
:mod:`~wdax.sweep.pruning` (successive halving),
:mod:`~wdax.sweep.results` (results and choice),
:mod:`~wdax.sweep.analysis` (the statistics of a report of them),
:mod:`~wdax.sweep.errors` (the errors a caller may handle) and
:mod:`~wdax.sweep.search` (the entry points).

The ``_``-prefixed modules are the machinery, each named for what it holds:
``_validation`` (the entry points' checks, before anything compiles),
``_checks`` (argument checks they share), ``_networks`` (linen and NNX
models behind one interface), ``_job`` (what the programs close over and
compute per configuration), ``_programs`` (the compiled programs),
``_plan`` (chunks, rungs, segments and evaluation points, on the host),
``_runner`` (training configurations on the programs, segment by segment),
``_state`` (where a training stands between two segments),
``_orders`` (the orders of visit), ``_devices``, ``_placement`` (arrays
between host and devices), ``_memory`` (a configuration's memory),
``_cache`` and ``_collector`` (a pause of the garbage collector while
tracing), ``_checkpoint`` (a sweep's progress in a folder: its files, their
checks and the refusal of another run), ``_fingerprint`` (what identifies
a run), ``_resume`` (what the entry points and the runner ask of a
checkpoint) and ``_saving`` (the runner's checkpoint hooks: a chunk's save
and a restore).

This package imports Flax; ``import wdax`` does not. Import it as
``from wdax import sweep``.
"""

from wdax.sweep import analysis
from wdax.sweep import datasets
from wdax.sweep import errors
from wdax.sweep.errors import CheckpointDamaged
from wdax.sweep.errors import CheckpointMismatch
from wdax.sweep.errors import Interrupted
from wdax.sweep.folds import check_data
from wdax.sweep.folds import contiguous_folds
from wdax.sweep.folds import contiguous_split
from wdax.sweep.folds import shuffled_folds
from wdax.sweep.folds import shuffled_split
from wdax.sweep.folds import stratified_folds
from wdax.sweep.folds import stratified_split
from wdax.sweep.kinds import KINDS
from wdax.sweep.kinds import Kind
from wdax.sweep.kinds import kind
from wdax.sweep.models import MLP
from wdax.sweep.models import TinyTransformer
from wdax.sweep.models import dropout
from wdax.sweep.pruning import Halving
from wdax.sweep.results import Choice
from wdax.sweep.results import Fit
from wdax.sweep.results import Result
from wdax.sweep.results import Selection
from wdax.sweep.scaling import standardize
from wdax.sweep.search import fit
from wdax.sweep.search import grid
from wdax.sweep.search import select
from wdax.sweep.settings import Settings
from wdax.sweep.space import Space
from wdax.sweep.tasks import Task
from wdax.sweep.tasks import classifier
from wdax.sweep.tasks import language_model
from wdax.sweep.tasks import mean
from wdax.sweep.tasks import regressor

__all__ = [
    'KINDS',
    'MLP',
    'CheckpointDamaged',
    'CheckpointMismatch',
    'Choice',
    'Fit',
    'Halving',
    'Interrupted',
    'Kind',
    'Result',
    'Selection',
    'Settings',
    'Space',
    'Task',
    'TinyTransformer',
    'analysis',
    'check_data',
    'classifier',
    'contiguous_folds',
    'contiguous_split',
    'datasets',
    'dropout',
    'errors',
    'fit',
    'grid',
    'kind',
    'language_model',
    'mean',
    'regressor',
    'select',
    'shuffled_folds',
    'shuffled_split',
    'standardize',
    'stratified_folds',
    'stratified_split',
]
