"""Tests of ``wdax sweep`` runs that succeed, end to end: what they print and
write (results.json, sweep.png), from the built-in digits and from .npz and
.csv files, and the inputs issue 12 found that must train, not be refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from support.cli_inputs import TINY
from support.cli_inputs import blobs
from support.cli_inputs import csv_file
from support.cli_inputs import npz_file
from support.cli_inputs import run

from wdax import cli

pytestmark = pytest.mark.usefixtures('keep_xla_flags')


def test_sweep_end_to_end_writes_results_and_plot(tmp_path):
  out = tmp_path / 'out'
  done = run('sweep', '--rates', '1e-3,1', *TINY, '--out', str(out))
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'chosen rate' in done.stdout and 'held-out test accuracy' in done.stdout
  # checkpoint/ holds the saved progress a later run of the command resumes.
  assert sorted(os.listdir(out)) == ['checkpoint', 'results.json', 'sweep.png']
  report = json.loads((out / 'results.json').read_text())
  assert report['settings']['rates'] == [0.001, 1.0]
  assert report['data']['source'] == 'sklearn.datasets.load_digits'
  assert report['data']['train'] + report['data']['test'] == 1797
  # Rate 0, no decay, is always trained: the baseline.
  assert report['settings']['grid'] == [0.0, 0.001, 1.0]
  assert [row['rate'] for row in report['table']] == [0.0, 0.001, 1.0]
  assert report['choice']['rate'] in (0.0, 0.001, 1.0)
  assert 0.5 < report['refit']['test_accuracy'] <= 1.0
  adamw = report['kinds']['adamw']
  assert adamw['curves']['epochs'] == [1, 2]
  assert np.shape(adamw['final']['val_accuracy']) == (3, 2)
  png = (out / 'sweep.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


def test_sweep_reads_npz_and_csv_alike(tmp_path, capsys):
  x, y = blobs()
  names = np.array(['cat', 'dog', 'eel'])[y]
  outs = []
  for name, path in (
      ('npz', npz_file(tmp_path / 'd.npz', x, y)),
      ('csv', csv_file(tmp_path / 'd.csv', x, names)),
  ):
    out = tmp_path / f'out-{name}'
    status = cli.main(['sweep', '--data', path, '--rates', '1e-2:1:2', *TINY, '--out', str(out)])
    assert status == 0, capsys.readouterr().err
    outs.append(json.loads((out / 'results.json').read_text()))
  npz, csv = outs
  assert npz['command'][:4] == ['wdax', 'sweep', '--data', str(tmp_path / 'd.npz')]
  assert npz['data']['classes'] == ['0', '1', '2']
  assert csv['data']['classes'] == ['cat', 'dog', 'eel']
  assert npz['data']['features'] == csv['data']['features'] == 5
  # Same numbers, same split, same training: the same table.
  np.testing.assert_allclose(
      [r['val_loss'] for r in npz['table']], [r['val_loss'] for r in csv['table']], rtol=1e-5
  )


def _sweep_json(tmp_path, capsys, *args):
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--rates', '1e-3,1', *TINY, *args, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  text = (out / 'results.json').read_text()
  return json.loads(text, parse_constant=lambda name: pytest.fail(f'{name} in results.json')), captured


def test_a_byte_order_mark_does_not_hide_the_label(tmp_path, capsys):
  x, y = blobs()
  path = tmp_path / 'bom.csv'
  csv_file(path, x, np.array(['cat', 'dog', 'eel'])[y])
  path.write_bytes(b'\xef\xbb\xbf' + path.read_bytes())
  report, _ = _sweep_json(tmp_path, capsys, '--data', str(path))
  assert report['data']['classes'] == ['cat', 'dog', 'eel']


def test_features_past_1e154_train_as_if_scaled_down(tmp_path, capsys):
  # Standardising is scale-free: x * 2**600 must train exactly as x does.
  x, y = blobs()
  small, _ = _sweep_json(tmp_path / 'small', capsys, '--data', npz_file(tmp_path / 's.npz', x, y))
  huge, _ = _sweep_json(tmp_path / 'huge', capsys, '--data', npz_file(tmp_path / 'h.npz', x * 2.0**600, y))
  assert huge['table'] == small['table']


def test_a_batch_past_the_training_split_is_the_split(tmp_path, capsys):
  x, y = blobs()
  path = npz_file(tmp_path / 'd.npz', x, y)
  whole, _ = _sweep_json(tmp_path / 'a', capsys, '--data', path, '--batch-size', '2147483647')
  train = whole['data']['train']
  exact, _ = _sweep_json(tmp_path / 'b', capsys, '--data', path, '--batch-size', str(train))
  assert whole['settings']['batch_size'] == train == 39
  assert whole['table'] == exact['table']


@pytest.mark.parametrize('rule', [[], ['--one-se']])
def test_a_diverged_rate_writes_null_not_nan(rule, tmp_path, capsys):
  # adamw's decay per step lr * rate = 3e35 blows the weights up at rate
  # 1e38; rates 0 and 1e-3 train, and one of them is chosen, by either rule.
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--rates', '1e-3,1e38', *rule, *TINY, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  report = json.loads(
      (out / 'results.json').read_text(),
      parse_constant=lambda name: pytest.fail(f'{name} in results.json'),
  )
  assert report['choice']['rate'] in (0.0, 0.001)
  diverged = report['table'][2]
  assert diverged['rate'] == 1e38 and diverged['diverged'] == 2
  assert diverged['val_loss'] is None and diverged['gap'] is None
  assert diverged['vs_baseline']['val_loss'] == {'mean': None, 'se': None}
  assert captured.err.splitlines() == [
      'wdax: warning: the training diverged (NaN or infinite loss) with adamw at 1 of 3 '
      'rates, from 1e+38; those are never chosen; try a smaller --lr'
  ]


def test_a_path_that_is_not_utf_8_is_shown_escaped(tmp_path, capsys):
  # The byte 0xff in a file name reaches Python as the surrogate \udcff;
  # capsys's stdout is strict UTF-8, as a terminal's is.
  x, y = blobs()
  path = npz_file(tmp_path / 'd\udcff.npz', x, y)
  out = tmp_path / 'out\udcfe'
  status = cli.main(['sweep', '--data', path, '--rates', '1e-3', *TINY, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  assert f'data: {tmp_path}/d\\xff.npz: ' in captured.out
  assert f'wrote {tmp_path}/out\\xfe/results.json' in captured.out
  # checkpoint/ holds the saved progress a later run of the command resumes.
  assert sorted(os.listdir(out)) == ['checkpoint', 'results.json', 'sweep.png']


def test_a_second_run_in_the_process_compiles_nothing(tmp_path, capsys):
  # The optimiser (its kind and mask) and the task compare by value, so the
  # second run of the same job finds the first run's compiled programs.
  from jax import monitoring

  compiled = []

  def listen(name, seconds, **kwargs):
    if name == '/jax/core/compile/backend_compile_duration':
      compiled.append(seconds)

  monitoring.register_event_duration_secs_listener(listen)
  try:
    args = ['sweep', '--rates', '1e-3,1', *TINY]
    assert cli.main([*args, '--out', str(tmp_path / 'a')]) == 0
    first = len(compiled)
    assert cli.main([*args, '--out', str(tmp_path / 'b')]) == 0
  finally:
    monitoring.unregister_event_duration_listener(listen)
  capsys.readouterr()
  assert len(compiled) == first


@pytest.mark.slow
@pytest.mark.parametrize('command', ['describe', 'sweep'])
def test_a_reader_that_goes_away_ends_the_run_quietly_with_sigpipes_status(tmp_path, command):
  # `wdax ... | head` where head is gone before the first line: every write
  # to stdout fails. 141 is 128 + SIGPIPE, as a shell reports other commands.
  args = ['describe'] if command == 'describe' else [
      'sweep', '--data', 'wine', '--rates', '1e-3', *TINY, '--out', str(tmp_path / 'out')]
  started = subprocess.Popen(
      [sys.executable, '-m', 'wdax', *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True,
  )
  started.stdout.close()
  _, err = started.communicate(timeout=600)
  assert (started.returncode, err) == (141, '')
  if command == 'sweep':  # what it saved is kept: the same command finishes the run
    again = run(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / 'out' / 'results.json').exists()
