"""Tests of wdax.cli.report and what it reports: no decay as the baseline,
several kinds, learning rates and dropout rates swept with the rate, pruned
sweeps, and results.json, each against numbers worked out by hand from the
results' own arrays."""

import json
import math
import os
import platform

import numpy as np
import pytest

from wdax import cli
from wdax import sweep
from wdax.cli import report as cli_report

TINY = ['--epochs', '2', '--hidden', '16', '--batch-size', '32', '--quiet', '--devices', '1']


pytestmark = pytest.mark.usefixtures('keep_xla_flags')


def _sweep(tmp_path, capsys, *args):
  out = tmp_path / 'out'
  status = cli.main(['sweep', *args, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  assert sorted(os.listdir(out)) == ['results.json', 'sweep.png']
  png = (out / 'sweep.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000
  report = json.loads(
      (out / 'results.json').read_text(),
      parse_constant=lambda name: pytest.fail(f'{name} in results.json'),
  )
  return report, captured.out


def _paired(a, b):
  d = np.asarray(a, float) - np.asarray(b, float)
  return d.mean(), d.std(ddof=1) / math.sqrt(len(d))


# Diabetes, 20 epochs of MLP(64): rate 1 wins, by more than its paired s.e.;
# digits, 2 epochs: no rate beats no decay.
BEATS = ['--data', 'diabetes', '--rates', '1e-1:10:3', '--epochs', '20', '--hidden', '64']
NOT = ['--rates', '1e-3:1:2', '--epochs', '2', '--hidden', '16', '--batch-size', '32']


@pytest.mark.parametrize('case', ['beats', 'no decay'])
def test_no_decay_is_trained_and_each_rate_is_compared_with_it_paired(case, tmp_path, capsys):
  args = BEATS if case == 'beats' else NOT
  report, out = _sweep(tmp_path, capsys, *args, '--folds', '3', '--seeds', '2', '--quiet', '--devices', '1')
  rates = [0.1, 1.0, 10.0] if case == 'beats' else [0.001, 1.0]
  assert report['settings']['rates'] == rates
  assert report['settings']['grid'] == [0.0, *rates]
  final = report['kinds']['adamw']['final']
  rows = report['table']
  assert [r['rate'] for r in rows] == [0.0, *rates]
  score = 'r2' if case == 'beats' else 'accuracy'
  for p, row in enumerate(rows):
    for metric in ('val_loss', f'val_{score}', 'train_loss'):
      # Paired over the 3 folds x 2 seeds: the mean and s.e. of the six
      # differences (results.json keeps the finals to 6 decimals).
      mean, se = _paired(final[metric][p], final[metric][0])
      assert row['vs_baseline'][metric]['mean'] == pytest.approx(mean, abs=2e-6)
      assert row['vs_baseline'][metric]['se'] == pytest.approx(se, abs=2e-6)
  choice = report['choice']
  d = choice['vs_baseline']
  assert d == rows[choice['index']]['vs_baseline']['val_loss']
  if case == 'beats':
    assert choice['rate'] == 1.0 and d['mean'] < -d['se'] and choice['beats_baseline']
    assert (
        f'against no decay (rate 0): validation loss {d["mean"]:+.4f} ± {d["se"]:.4f}, paired '
        'over 3 folds x 2 seed(s): it beats no decay by more than its standard error'
    ) in out
  else:
    assert choice['rate'] == 0.0 and not choice['beats_baseline']
    assert 'against no decay: the choice is no decay itself; no rate beat it' in out


def test_criterion_accuracy_compares_accuracies_with_no_decay(tmp_path, capsys):
  report, out = _sweep(tmp_path, capsys, '--rates', '1', '--folds', '2', '--criterion', 'accuracy', *TINY)
  choice = report['choice']
  assert choice['metric'] == 'val_accuracy' and choice['mode'] == 'max'
  d = choice['vs_baseline']
  assert choice['beats_baseline'] == (choice['rate'] > 0 and d['mean'] > d['se'])
  assert 'Δ accuracy vs no decay' in out


def test_several_kinds_each_get_a_block_and_the_best_choice_wins(tmp_path, capsys):
  report, out = _sweep(tmp_path, capsys, '--kind', 'adamw,l2,l1', '--rates', '1e-2,1', '--folds', '2', *TINY)
  assert list(report['kinds']) == ['adamw', 'l2', 'l1']
  assert [r['kind'] for r in report['table']] == ['adamw'] * 3 + ['l2'] * 3 + ['l1'] * 3
  for kind in ('adamw', 'l2', 'l1'):
    assert f'{kind}: validation by point' in out
  # Each kind's choice is its lowest mean validation loss; the overall
  # choice the lowest of those.
  means = {}
  for kind, entry in report['kinds'].items():
    rows = [r for r in report['table'] if r['kind'] == kind]
    best = min(range(3), key=lambda i: rows[i]['val_loss'])
    assert entry['choice']['index'] == best
    means[kind] = rows[best]['val_loss']
  assert report['choice']['kind'] == min(means, key=means.get)
  assert f'with {report["choice"]["kind"]} among adamw, l2, l1' in out
  # Without decay every kind is the same Adam: the baselines agree.
  bases = [r['val_loss'] for r in report['table'] if r['rate'] == 0]
  np.testing.assert_allclose(bases, bases[0], rtol=1e-5)
  # One compiled program a kind, each refit of its own choice.
  assert {report['kinds'][k]['refit']['kind'] for k in report['kinds']} == {'adamw', 'l2', 'l1'}


def test_learning_rates_swept_with_the_rate_and_the_best_product(tmp_path, capsys):
  report, out = _sweep(
      tmp_path, capsys, '--data', 'diabetes', '--lr', '3e-3,1e-2', '--rates', '1,10',
      '--folds', '3', '--epochs', '10', '--hidden', '64', '--quiet', '--devices', '1',
  )
  assert report['settings']['names'] == ['rate', 'lr']
  rows = report['table']
  assert len(rows) == 3 * 2
  entry = report['kinds']['adamw']
  for lr, found in zip((3e-3, 1e-2), entry['by_lr']):
    mine = [r for r in rows if r['lr'] == lr]
    best = min(mine, key=lambda r: r['val_loss'])
    assert found['lr'] == lr and found['rate'] == best['rate']
    assert found['product'] == pytest.approx(lr * best['rate'])
  # Its baseline is no decay at the same learning rate.
  final = entry['final']['val_loss']
  for i, r in enumerate(rows):
    base = next(j for j, b in enumerate(rows) if b['rate'] == 0 and b['lr'] == r['lr'])
    mean, _ = _paired(final[i], final[base])
    assert r['vs_baseline']['val_loss']['mean'] == pytest.approx(mean, abs=2e-6)
  # Both learning rates choose rate 1: products 3e-3 and 1e-2, x3.33 apart,
  # within one step (x10) of the rate grid.
  assert [f['rate'] for f in entry['by_lr']] == [1.0, 1.0]
  assert entry['stability'] == {
      'grid_step': pytest.approx(10.0), 'with_decay': 2, 'learning_rates': 2,
      'products_span': pytest.approx(10 / 3), 'rates_span': 1.0, 'stable': True,
  }
  assert 'best rate per learning rate (adamw): lr 0.003: rate 1 (lr·rate 0.003), lr 0.01: rate 1' in out
  assert 'lr·rate spans x3.33 across learning rates, the best rate x1: the product is stable' in out


def test_dropout_swept_with_the_rate_reaches_the_model(tmp_path, capsys):
  args = ['--rates', '1', '--folds', '2', *TINY]
  plain, _ = _sweep(tmp_path / 'a', capsys, *args)
  report, _ = _sweep(tmp_path / 'b', capsys, *args, '--dropout', '0,0.5')
  assert report['settings']['names'] == ['rate', 'dropout']
  rows = report['table']
  assert [(r['rate'], r['dropout']) for r in rows] == [(0.0, 0.0), (0.0, 0.5), (1.0, 0.0), (1.0, 0.5)]
  # Dropout 0 trains exactly as no --dropout; 0.5 trains otherwise.
  for rate, row in zip((0.0, 1.0), plain['table']):
    same = next(r for r in rows if r['rate'] == rate and r['dropout'] == 0.0)
    assert same['val_loss'] == pytest.approx(row['val_loss'], rel=1e-6)
    other = next(r for r in rows if r['rate'] == rate and r['dropout'] == 0.5)
    assert abs(other['train_loss'] - row['train_loss']) > 1e-3


def test_a_pruned_sweep_keeps_no_decay_and_marks_the_pruned_points(tmp_path, capsys):
  report, out = _sweep(
      tmp_path, capsys, '--rates', '1e-3,1e-2,1e-1,1,10', '--prune', '1:2', '--folds', '2',
      '--epochs', '4', '--hidden', '16', '--batch-size', '32', '--quiet', '--devices', '1',
  )
  assert report['settings']['prune'] == {'min_epochs': 1, 'reduction_factor': 2, 'keep': {'rate': 0.0}, 'one_se': 'rate'}
  assert report['settings']['rungs'] == [1, 2, 4]
  rows = report['table']
  assert rows[0]['rate'] == 0.0 and rows[0]['rung'] == 2 and not rows[0]['pruned']
  # The 5 other rates: 5, then 3, then 2; and the baseline every rung.
  assert sum(not r['pruned'] for r in rows) == 3
  assert sorted(r['epochs_trained'] for r in rows) == [1, 1, 2, 4, 4, 4]
  assert all(r['pruned'] == (r['epochs_trained'] < 4) for r in rows)
  expected = sweep.Halving(1, 2).configuration_epochs(6, 4, trainings=2, kept=1)
  assert report['kinds']['adamw']['configuration_epochs'] == expected == 2 * (6 * 1 + 4 * 1 + 3 * 2)
  # A pruned point is compared with no decay at its own last rung.
  curves = report['kinds']['adamw']
  assert curves['curves']['epochs'] == sorted(set(curves['curves']['epochs']))
  assert report['choice']['point'] in [{'rate': r['rate']} for r in rows if not r['pruned']]
  assert 'pruned at 1 ep.' in out


def test_results_json_holds_what_it_takes_to_rerun(tmp_path, capsys):
  import flax
  import jax
  import optax

  import wdax

  args = ['--rates', '1', '--folds', '2', *TINY]
  report, _ = _sweep(tmp_path, capsys, *args)
  assert report['schema_version'] == cli_report.SCHEMA_VERSION == 1
  assert list(report)[:2] == ['schema_version', 'wdax']
  assert report['command'] == ['wdax', 'sweep', *args, '--out', str(tmp_path / 'out')]
  assert (report['wdax'], report['jax'], report['optax'], report['flax']) == (
      wdax.__version__, jax.__version__, optax.__version__, flax.__version__
  )
  assert report['python'] == platform.python_version()
  settings = report['settings']
  for key in ('data', 'kinds', 'grid', 'lr', 'dropout', 'folds', 'seeds', 'epochs', 'hidden',
              'batch_size', 'criterion', 'test_size', 'seed', 'prune', 'model', 'mask'):
    assert key in settings, key
  for row in report['table']:
    for key in ('kind', 'rate', 'val_loss', 'val_loss_se', 'val_accuracy', 'val_accuracy_se',
                'train_loss', 'train_loss_se', 'rung', 'epochs_trained', 'pruned', 'vs_baseline'):
      assert key in row, key
    assert set(row['vs_baseline']) == {'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy'}


def test_the_difference_axis_ticks_0_and_the_decades_past_its_linear_part():
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  from wdax.cli import plotting

  # The choice differs from no decay by -0.0075 +- 0.002, the worst rate by
  # +0.39: a symmetric-log axis, linear within 0.0095 of 0.
  diffs = [(-0.0075, 0.002), (0.02, 0.002), (0.39, 0.01), (-0.0001, 0.0001)]
  table = [{'rate': r, 'kind': 'adamw', 'vs_baseline': {'val_loss': {'mean': m, 'se': s}}}
           for r, (m, s) in zip([0.25, 1.0, 10.0, 1e-3], diffs)]
  results = {'table': table, 'choice': {'rate': 0.25, 'kind': 'adamw', 'point': {'rate': 0.25}}}
  fig, ax = plt.subplots()
  ax.plot([1, 2], [-0.02, 0.39])  # the points and their error bars
  plotting.fit_difference_axis(ax, results, 'val_loss')
  assert ax.get_yscale() == 'symlog'
  low, high = ax.get_ylim()
  # 10^-3 would fall inside the linear part, on top of 0's label.
  expected = [t for t in (-0.1, -0.01, 0.0, 0.01, 0.1) if low <= t <= high]
  np.testing.assert_allclose(ax.get_yticks(), expected)
  assert 0.1 in expected and -0.01 in expected
  plt.close(fig)
