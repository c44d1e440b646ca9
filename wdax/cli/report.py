"""The report of ``wdax sweep``: dataclasses made once from the sweep's
results (:func:`summarise`), and their JSON, results.json
(:meth:`Report.to_json`, schema :data:`SCHEMA_VERSION`, documented in
``docs/results_schema.md``).

Every statistic in it comes from :mod:`wdax.sweep` (:mod:`wdax.sweep.analysis`
and :class:`wdax.sweep.Result`'s methods); this module only gathers them.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from typing import Any

import flax
import jax
import numpy as np
import optax

import wdax
from wdax.cli.problems import Setup
from wdax.cli.requests import SweepRequest
from wdax.sweep import Fit
from wdax.sweep import Halving
from wdax.sweep import Result
from wdax.sweep import Selection
from wdax.sweep import analysis
from wdax.sweep.results import mean_se

# Raised when a field of results.json is added, removed or changes meaning.
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Difference:
  """A difference from no decay, paired over folds and seeds."""

  mean: float
  se: float


@dataclasses.dataclass(frozen=True)
class Row:
  """One point of one kind's grid.

  Attributes:
    kind: the decay kind.
    values: :meth:`wdax.sweep.Result.table`'s row: the point's values, each
      metric's mean and s.e., ``diverged``, ``rung`` and ``epochs_trained``.
    pruned: whether the point stopped before the last rung.
    gap: the generalisation gap of the score (:func:`wdax.sweep.analysis.gap`).
    gap_se: its standard error.
    perplexity: for a language model, the validation and training
      perplexity (:func:`wdax.sweep.analysis.perplexity`), else None.
    vs_baseline: each metric's difference from no decay.
  """

  kind: str
  values: dict[str, Any]
  pruned: bool
  gap: float
  gap_se: float
  perplexity: tuple[float, float] | None
  vs_baseline: dict[str, Difference]

  def to_json(self) -> dict[str, Any]:
    out = {'kind': self.kind, **self.values, 'pruned': self.pruned, 'gap': self.gap,
           'gap_se': self.gap_se}
    if self.perplexity is not None:
      out['val_perplexity'], out['train_perplexity'] = self.perplexity
    out['vs_baseline'] = {m: dataclasses.asdict(d) for m, d in self.vs_baseline.items()}
    return out


@dataclasses.dataclass(frozen=True)
class KindChoice:
  """A kind's chosen point (:meth:`wdax.sweep.Result.choose`) and how it
  compares with no decay (:func:`wdax.sweep.analysis.gain`)."""

  kind: str
  index: int
  point: dict[str, float]
  rate: float
  criterion: str
  metric: str
  mode: str
  mean: float
  se: float
  vs_baseline: Difference
  beats_baseline: bool

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Refit:
  """A kind's choice trained on the whole training split and tested.

  Attributes:
    test: each test metric's mean over seeds (and ``perplexity`` for a
      language model).
    test_se: each test metric's standard error over seeds (NaN for one).
    test_per_seed: each test metric, one value per seed.
    train: each training metric's mean over seeds.
  """

  kind: str
  point: dict[str, float]
  rate: float
  test: dict[str, float]
  test_se: dict[str, float]
  test_per_seed: dict[str, list[float]]
  train: dict[str, float]

  def to_json(self) -> dict[str, Any]:
    out: dict[str, Any] = {'kind': self.kind, 'point': self.point, 'rate': self.rate}
    for m, value in self.test.items():
      out[f'test_{m}'] = value
      if m in self.test_per_seed:
        out[f'test_{m}_per_seed'] = _floats(self.test_per_seed[m])
    for m, value in self.train.items():
      out[f'train_{m}'] = value
    return out


@dataclasses.dataclass(frozen=True)
class LrBest:
  """The best rate at one learning rate; all but ``lr`` None where every
  rate diverged there."""

  lr: float
  rate: float | None
  product: float | None
  mean: float | None
  se: float | None


@dataclasses.dataclass(frozen=True)
class Chunks:
  """How a kind's sweep ran: devices, chunks and the memory estimate."""

  devices: int
  chunk_size: int
  chunks: int
  bytes_per_configuration: int


@dataclasses.dataclass(frozen=True)
class KindReport:
  """One decay kind's sweep.

  Attributes:
    curves: each metric's mean learning curve, ``(P, E)``.
    final: each metric at each point's last evaluation, ``(P, F * S)``.
    by_lr: the best rate at each learning rate, when it was swept.
    stability: whether the best ``lr * rate`` is stable, when it was swept.
  """

  kind: str
  rows: list[Row]
  choice: KindChoice
  refit: Refit
  curves: dict[str, np.ndarray]
  final: dict[str, np.ndarray]
  configuration_epochs: int
  chunks: Chunks
  by_lr: list[LrBest] | None
  stability: analysis.Stability | None

  def to_json(self, epochs: list[int]) -> dict[str, Any]:
    out = {
        'choice': self.choice.to_json(),
        'refit': self.refit.to_json(),
        'curves': {'epochs': epochs, **{m: _floats(v) for m, v in self.curves.items()}},
        'final': {m: _floats(v) for m, v in self.final.items()},
        'configuration_epochs': self.configuration_epochs,
    }
    if self.by_lr is not None and self.stability is not None:
      out['by_lr'] = [dataclasses.asdict(b) for b in self.by_lr]
      out['stability'] = dataclasses.asdict(self.stability)
    return out


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds spent cross-validating and refitting, all kinds together."""

  sweep: float
  refit: float


@dataclasses.dataclass(frozen=True)
class Report:
  """What ``wdax sweep`` found, and what it takes to run it again.

  Attributes:
    request: the options.
    about: what :mod:`wdax.cli.problems` says of the data.
    model: the model, as the output names it.
    batch_size: the minibatch size trained with.
    names: the names of the space (``rate``, and ``lr`` or ``dropout``).
    kinds: each kind's report, in the order asked for.
    best: the kind whose choice is best (:func:`wdax.sweep.analysis.best_of`).
    epochs: the epochs at each evaluation.
    rungs: the epoch each rung ends at.
    folds: the number of folds.
    seeds: the seeds.
    timing: the seconds spent.
  """

  request: SweepRequest
  about: dict[str, Any]
  model: str
  batch_size: int
  metric: str
  mode: str
  names: list[str]
  kinds: dict[str, KindReport]
  best: str
  epochs: list[int]
  rungs: list[int]
  folds: int
  seeds: list[int]
  timing: Timing

  @property
  def choice(self) -> KindChoice:
    """The choice among every kind."""
    return self.kinds[self.best].choice

  @property
  def refit(self) -> Refit:
    """The refit of :attr:`choice`."""
    return self.kinds[self.best].refit

  @property
  def configuration_epochs(self) -> int:
    """The epochs trained, summed over every training of every kind."""
    return sum(k.configuration_epochs for k in self.kinds.values())

  def to_json(self) -> dict[str, Any]:
    """The content of results.json (NaN and infinities still as floats)."""
    request = self.request
    return {
        'schema_version': SCHEMA_VERSION,
        **versions(),
        'command': ['wdax', *request.argv],
        'data': self.about,
        'settings': self._settings(),
        'table': [row.to_json() for entry in self.kinds.values() for row in entry.rows],
        'choice': self.choice.to_json(),
        'refit': self.refit.to_json(),
        'kinds': {k: entry.to_json(self.epochs) for k, entry in self.kinds.items()},
        'run': {
            **dataclasses.asdict(self.kinds[next(iter(self.kinds))].chunks),
            'sweep_seconds': round(self.timing.sweep, 3),
            'refit_seconds': round(self.timing.refit, 3),
            'configuration_epochs': self.configuration_epochs,
        },
    }

  def _settings(self) -> dict[str, Any]:
    request = self.request
    return {
        'data': request.data, 'problem': request.problem, 'kinds': list(request.kinds),
        'rates': [float(r) for r in request.rates], 'grid': [float(r) for r in request.grid],
        'names': self.names, 'lr': [float(lr) for lr in request.lr],
        'dropout': None if request.dropout is None else [float(d) for d in request.dropout],
        'folds': request.folds, 'seeds': self.seeds, 'epochs': request.epochs,
        'rungs': self.rungs, 'prune': _prune(request.halving), 'model': self.model,
        'hidden': list(request.hidden), 'batch_size': self.batch_size, 'mask': 'flax_default',
        'criterion': request.criterion, 'metric': self.metric, 'mode': self.mode,
        'one_se': request.one_se, 'test_size': request.test_size, 'seed': request.seed,
        'devices': request.devices, 'chunk_size': request.chunk_size,
    }


def versions() -> dict[str, str]:
  """The versions results.json records."""
  return {
      'wdax': wdax.__version__, 'jax': jax.__version__, 'optax': optax.__version__,
      'flax': flax.__version__, 'numpy': np.__version__,
      'python': platform.python_version(),
  }


def _prune(halving: Halving | None) -> dict[str, Any] | None:
  if halving is None:
    return None
  return {
      'min_epochs': halving.min_epochs, 'reduction_factor': halving.reduction_factor,
      'keep': dict(halving.keep), 'one_se': halving.one_se,
  }


def _floats(a: Any) -> Any:
  return np.round(np.asarray(a, np.float64), 6).tolist()


def _rows(kind: str, result: Result, score: str, language: bool) -> list[Row]:
  differences = analysis.differences(result)
  gap, gap_se = analysis.gap(result, score)
  last = len(np.asarray(result.rungs)) - 1
  rows = []
  for i, values in enumerate(result.table()):
    rows.append(Row(
        kind=kind, values=values, pruned=bool(values['rung'] < last),
        gap=float(gap[i]), gap_se=float(gap_se[i]),
        perplexity=(
            analysis.perplexity(values['val_loss']), analysis.perplexity(values['train_loss'])
        ) if language else None,
        vs_baseline={m: Difference(float(mean[i]), float(se[i])) for m, (mean, se) in differences.items()},
    ))
  return rows


def _refit(kind: str, fit: Fit, language: bool) -> Refit:
  test = {m[len('test_'):]: fit.final(m) for m in fit.curves if m.startswith('test_')}
  means = {m: float(np.mean(v)) for m, v in test.items()}
  if language:
    means['perplexity'] = analysis.perplexity(means['loss'])
  return Refit(
      kind=kind, point=dict(fit.point), rate=fit.point['rate'], test=means,
      test_se={m: float(mean_se(v)[1]) for m, v in test.items()},
      test_per_seed={m: [float(x) for x in v] for m, v in test.items()},
      train={
          m[len('train_'):]: float(np.mean(fit.final(m)))
          for m in fit.curves if m.startswith('train_')
      },
  )


def _by_lr(result: Result, setup: Setup, one_se: bool) -> list[LrBest]:
  out = []
  for lr, c in analysis.best_per(result, 'lr', setup.metric, setup.mode, one_se).items():
    if c is None:
      out.append(LrBest(lr, None, None, None, None))
    else:
      rate = c.point['rate']
      out.append(LrBest(lr, rate, lr * rate, c.mean, c.se))
  return out


def _kind(request: SweepRequest, setup: Setup, kind: str, selection: Selection) -> KindReport:
  result, choice = selection.result, selection.choice
  rows = _rows(kind, result, setup.score, request.problem == 'language')
  chosen = rows[choice.index].vs_baseline[setup.metric]
  by_lr = _by_lr(result, setup, request.one_se) if 'lr' in result.points[0] else None
  return KindReport(
      kind=kind, rows=rows,
      choice=KindChoice(
          kind=kind, index=choice.index, point=dict(choice.point), rate=choice.point['rate'],
          criterion=request.criterion, metric=setup.metric, mode=setup.mode, mean=choice.mean,
          se=choice.se, vs_baseline=chosen,
          beats_baseline=analysis.gain(chosen.mean, chosen.se, setup.mode),
      ),
      refit=_refit(kind, selection.refit, request.problem == 'language'),
      curves=analysis.mean_curves(result),
      final={m: result.final(m) for m in result.metrics},
      configuration_epochs=int(result.configuration_epochs or 0),
      chunks=Chunks(result.devices, result.chunk_size, result.chunks, result.bytes_per_configuration),
      by_lr=by_lr,
      stability=None if by_lr is None else analysis.stability(
          {b.lr: b.rate for b in by_lr}, request.grid
      ),
  )


def summarise(
    request: SweepRequest, setup: Setup, found: Mapping[str, Selection], timing: Timing
) -> Report:
  """The report of the sweeps of every kind in ``found`` (a kind's name to
  its :class:`wdax.sweep.Selection`), and the choice among them."""
  kinds = {kind: _kind(request, setup, kind, s) for kind, s in found.items()}
  best = analysis.best_of({k: found[k].choice for k in found})
  result = found[best].result
  return Report(
      request=request, about=setup.split.about, model=setup.model,
      batch_size=setup.batch_size, metric=setup.metric, mode=setup.mode,
      names=list(result.points[0]), kinds=kinds, best=best,
      epochs=[int(e) for e in result.epochs], rungs=[int(e) for e in np.asarray(result.rungs)],
      folds=result.folds, seeds=list(result.seeds), timing=timing,
  )
