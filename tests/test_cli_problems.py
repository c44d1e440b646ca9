"""Tests of wdax.cli.problems: the built-in data sets from the command line,
each with its split, model, task and metrics, checked against independent
references (scikit-learn's data and r2_score, the corpus itself)."""

import json
import math

import numpy as np
import pytest
from support.cli_inputs import refused

from wdax import cli
from wdax import sweep
from wdax.sweep import datasets

CHEAP = ['--epochs', '2', '--folds', '2', '--hidden', '8', '--batch-size', '32', '--quiet', '--devices', '1']


pytestmark = pytest.mark.usefixtures('keep_xla_flags')


@pytest.fixture
def spied(monkeypatch):
  """Records what each ``sweep.select`` of a run was given and returned."""
  calls = []
  real = sweep.select

  def select(task, data, space, **kwargs):
    found = real(task, data, space, **kwargs)
    calls.append({'task': task, 'data': data, 'space': space, 'found': found, **kwargs})
    return found

  monkeypatch.setattr(sweep, 'select', select)
  return calls


def _sweep(tmp_path, capsys, *args):
  out = tmp_path / 'out'
  status = cli.main(['sweep', *args, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  return json.loads((out / 'results.json').read_text()), captured.out


@pytest.mark.parametrize('name', ['breast_cancer', 'wine'])
def test_a_table_of_classes_is_split_by_class_and_named(name, tmp_path, capsys, spied):
  from sklearn import datasets as sk

  loaded = getattr(sk, f'load_{name}')()
  report, out = _sweep(tmp_path, capsys, '--data', name, '--rates', '1e-2', *CHEAP)
  assert report['data']['classes'] == list(loaded.target_names)
  assert report['data']['source'] == f'sklearn.datasets.load_{name}'
  assert report['settings']['problem'] == 'classification'
  # The stratified split of the labels, the features standardised on the
  # training half only.
  train, test = sweep.stratified_split(loaded.target, 0.5, seed=0)
  data = spied[0]['data']
  np.testing.assert_array_equal(data['y'], loaded.target[train])
  np.testing.assert_array_equal(spied[0]['test']['y'], loaded.target[test])
  np.testing.assert_allclose(data['x'], sweep.standardize(loaded.data[train])[0], rtol=1e-6)
  assert 'held-out test accuracy' in out
  assert 0.0 <= report['refit']['test_accuracy'] <= 1.0


def test_diabetes_is_a_regression_scored_by_sklearns_r2(tmp_path, capsys, spied):
  from sklearn import datasets as sk
  from sklearn.metrics import r2_score

  x, y = sk.load_diabetes(return_X_y=True)
  report, out = _sweep(tmp_path, capsys, '--data', 'diabetes', '--rates', '1e-1', *CHEAP)
  assert report['settings']['problem'] == 'regression'
  assert report['settings']['metric'] == 'val_loss'
  call = spied[0]
  # A shuffled split; the targets standardised with the training statistics.
  train, test = sweep.shuffled_split(len(y), 0.5, seed=0)
  mean, std = y[train].mean(), y[train].std()
  np.testing.assert_allclose(call['data']['y'] * std + mean, y[train], rtol=1e-5)
  np.testing.assert_allclose(call['test']['y'] * std + mean, y[test], rtol=1e-5)
  # The reported test R^2 is scikit-learn's of the refit's predictions, in
  # the standardised units and in the original ones alike.
  refit = call['found'].refit
  params = {'params': jax_first(refit.params)}
  model = sweep.MLP(hidden=(8,), outputs=1)
  pred = np.asarray(model.apply(params, call['test']['x']))[:, 0]
  expected = r2_score(call['test']['y'], pred)
  np.testing.assert_allclose(report['refit']['test_r2'], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(r2_score(y[test], pred * std + mean), expected, rtol=1e-4, atol=1e-5)
  assert f'held-out test R² {expected:.4f}' in out


def jax_first(tree):
  """The first seed's parameters of a refit (stacked over seeds)."""
  import jax

  return jax.tree.map(lambda a: a[0], tree)


def test_text_is_a_language_model_on_the_corpus_in_order(tmp_path, capsys, spied):
  report, out = _sweep(
      tmp_path, capsys, '--data', 'text', '--rates', '1', '--epochs', '1', '--folds', '2',
      '--hidden', '8', '--batch-size', '64', '--quiet', '--devices', '1',
  )
  tokens = datasets.text().data['tokens']
  call = spied[0]
  train, test = sweep.contiguous_split(len(tokens), 0.2)
  # The end of the corpus held out, the rest in order; folds contiguous.
  np.testing.assert_array_equal(call['data']['tokens'], tokens[train])
  np.testing.assert_array_equal(call['test']['tokens'], tokens[test])
  assert call['task'].folds == 'contiguous'
  np.testing.assert_array_equal(call['found'].result.fold_ids, sweep.contiguous_folds(len(train), 2))
  refit = report['refit']
  assert refit['test_perplexity'] == pytest.approx(math.exp(refit['test_loss']), rel=1e-9)
  row = report['table'][0]
  assert row['val_perplexity'] == pytest.approx(math.exp(row['val_loss']), rel=1e-9)
  assert report['data']['tokens_per_row'] == 33 and report['data']['vocabulary'] == datasets.VOCAB
  assert f'held-out test perplexity {refit["test_perplexity"]:.4f}' in out


def test_choosing_text_by_perplexity_is_choosing_by_the_loss(tmp_path, capsys):
  args = ['--data', 'text', '--rates', '1,10', '--epochs', '1', '--folds', '2', '--hidden', '8',
          '--batch-size', '64', '--quiet', '--devices', '1']
  by_loss, _ = _sweep(tmp_path / 'a', capsys, *args)
  by_perplexity, _ = _sweep(tmp_path / 'b', capsys, *args, '--criterion', 'perplexity')
  assert by_perplexity['settings']['metric'] == by_loss['settings']['metric'] == 'val_loss'
  assert by_perplexity['choice']['point'] == by_loss['choice']['point']


def _no_such_criterion(data, criterion, problem, choices):
  """``--data data --criterion criterion`` for a built-in data set of a
  ``problem`` that lacks the criterion, and the line it gets."""
  return (
      ['--data', data, '--criterion', criterion],
      f'--criterion {criterion}: --data {data} is a {problem} problem; choose from {choices}',
  )


def _past_the_training(data, folds, training):
  """``--data data --folds folds``, more folds than the ``training`` split
  holds, and the line it gets."""
  return ['--data', data, '--folds', str(folds)], f'{training}, fewer than --folds {folds}'


BAD = {
    'accuracy of a regression': _no_such_criterion('diabetes', 'accuracy', 'regression', 'loss, r2'),
    'r2 of classes': _no_such_criterion('wine', 'r2', 'classification', 'loss, accuracy'),
    'r2 of text': _no_such_criterion('text', 'r2', 'language', 'loss, perplexity, accuracy'),
    'perplexity of a file': (
        ['--data', 'x.npz', '--criterion', 'perplexity'],
        '--criterion perplexity: a data file (classes) is a classification problem',
    ),
    'a transformer width': (
        ['--data', 'text', '--hidden', '30'],
        "--hidden 30: for --data text, the transformer's width: one value, divisible by 4",
    ),
    'two transformer widths': (['--data', 'text', '--hidden', '8,8'], '--hidden 8,8: for --data text'),
    'folds past the regression': _past_the_training(
        'diabetes', 300, 'sklearn.datasets.load_diabetes: 221 training examples'
    ),
    # The corpus's source names a folder of this machine: left out.
    'folds past the text': _past_the_training('text', 1000, ': 397 training rows of 33 tokens'),
    'a name near a built-in one': (['--data', 'Digits'], '--data Digits: no such file'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_of_the_data_sets_is_one_line(case, tmp_path, capsys):
  args, expected = BAD[case]
  out = tmp_path / 'out'
  refused(cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1']), capsys, expected)
  assert not out.exists()


def test_help_lists_the_data_sets_and_the_kinds(capsys):
  assert cli.main(['sweep', '--help']) == 0
  text = capsys.readouterr().out
  for name in datasets.NAMES:
    assert f'\n  {name} ' in text, name
  for kind in sweep.KINDS:
    assert kind in text
  for option in ('--kind', '--lr', '--dropout', '--prune', '--criterion'):
    assert option in text


def test_the_setup_is_resolved_once_from_the_request_and_the_data():
  import jax

  from wdax.cli import loading
  from wdax.cli import problems
  from wdax.cli.requests import SweepRequest

  request = SweepRequest.of('wine', rates='1', folds=2, hidden=(8, 4), batch_size=500,
                            criterion='accuracy')
  data = loading.load('wine')
  setup = problems.resolve(request, data, jax.devices()[0])
  # Half held out, by class: the training split is the whole batch.
  train = len(sweep.stratified_split(data.labels, 0.5, seed=0)[0])
  assert (setup.metric, setup.mode, setup.score, setup.model) == (
      'val_accuracy', 'max', 'accuracy', 'MLP(8, 4)'
  )
  assert setup.split.examples == train == setup.batch_size < 500
  assert setup.task.folds == 'stratified'


def _blobs_setup(seeds):
  import jax

  from wdax.cli import loading
  from wdax.cli import problems
  from wdax.cli.requests import SweepRequest

  rng = np.random.default_rng(0)
  y = np.arange(40) % 3
  data = loading.Data(rng.normal(size=(40, 5)) + y[:, None], y, 'blobs', None, (5,))
  request = SweepRequest.of('blobs.npz', rates='1', folds=2, hidden=(8,), seeds=seeds,
                            batch_size=10, epochs=1)
  return request, data, jax.devices()[0], problems


def test_the_memory_check_is_the_sweeps_estimate_of_its_smallest_chunk(monkeypatch):
  from wdax.cli import _memory

  request, data, device, problems = _blobs_setup(seeds=4)
  monkeypatch.setattr(problems, '_device_memory', lambda device: None)
  setup = problems.resolve(request, data, device)

  def need(seeds):
    return _memory.smallest_chunk(
        setup.task, setup.split.train, request.space, setup.optimizer(request, 'adamw'),
        seeds=seeds, batch_size=setup.batch_size, folds=2, fold_seed=0, device=device,
    )

  # The estimate that sizes the sweep's chunks, for one configuration ...
  grid = sweep.grid(setup.task, setup.split.train, request.space,
                    optimizer=setup.optimizer(request, 'adamw'), folds=2, epochs=1,
                    batch_size=setup.batch_size, devices=1)
  assert need(0) == grid.bytes_per_configuration
  # ... and every seed's initial MLP(8) of 5 features and 3 classes:
  # (5 + 1) * 8 + (8 + 1) * 3 = 75 float32 parameters, 300 bytes.
  assert need(4) - need(0) == 4 * 300
  # A device of exactly that memory trains; a byte less is refused.
  monkeypatch.setattr(problems, '_device_memory', lambda device: need(4))
  problems.resolve(request, data, device)
  monkeypatch.setattr(problems, '_device_memory', lambda device: need(4) - 1)
  with pytest.raises(cli.BadInput, match=r'--hidden 8 --seeds 4: training MLP\(8\) on 5 features needs at least'):
    problems.resolve(request, data, device)
