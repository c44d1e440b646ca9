"""Tests of the wdax command line: a tiny end-to-end sweep, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from wdax import cli

TINY = ['--epochs', '2', '--folds', '2', '--hidden', '16', '--batch-size', '16', '--quiet', '--devices', '1']


@pytest.fixture(autouse=True)
def _keep_xla_flags(monkeypatch):
  # `wdax sweep` may ask XLA for host devices through XLA_FLAGS; keep the
  # environment of later tests as it was.
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))


def _run(*args):
  return subprocess.run(
      [sys.executable, '-m', 'wdax', *args], capture_output=True, text=True,
      timeout=600, check=False,
  )


def test_sweep_end_to_end_writes_results_and_plot(tmp_path):
  out = tmp_path / 'out'
  done = _run('sweep', '--rates', '1e-3,1', *TINY, '--out', str(out))
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'chosen rate' in done.stdout and 'held-out test accuracy' in done.stdout
  assert sorted(os.listdir(out)) == ['results.json', 'sweep.png']
  report = json.loads((out / 'results.json').read_text())
  assert report['settings']['rates'] == [0.001, 1.0]
  assert report['data']['source'] == 'sklearn.datasets.load_digits'
  assert report['data']['train'] + report['data']['test'] == 1797
  assert [row['rate'] for row in report['table']] == [0.001, 1.0]
  assert report['choice']['rate'] in (0.001, 1.0)
  assert 0.5 < report['refit']['test_accuracy'] <= 1.0
  assert report['curves']['epochs'] == [1, 2]
  assert np.shape(report['final']['val_accuracy']) == (2, 2)
  png = (out / 'sweep.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


def _npz(path, x, y):
  np.savez(path, x=x, y=y)
  return str(path)


def _csv(path, x, y, label='label'):
  lines = [','.join([f'f{i}' for i in range(x.shape[1])] + [label])]
  lines += [','.join([*map(str, row), str(lab)]) for row, lab in zip(x, y)]
  path.write_text('\n'.join(lines) + '\n')
  return str(path)


def _blobs(n=80, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 3
  x = rng.normal(size=(n, 5)) + 2.0 * y[:, None]
  return x.round(4), y


def test_sweep_reads_npz_and_csv_alike(tmp_path, capsys):
  x, y = _blobs()
  names = np.array(['cat', 'dog', 'eel'])[y]
  outs = []
  for name, path in (
      ('npz', _npz(tmp_path / 'd.npz', x, y)),
      ('csv', _csv(tmp_path / 'd.csv', x, names)),
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


def _bad_inputs(tmp_path):
  x, y = _blobs()
  x_nan = x.copy()
  x_nan[7, 2] = np.nan
  few = y.copy()
  few[few == 2] = 1
  few[:3] = 2  # class 2: three examples, about one in training
  return {
      'missing file': ['--data', str(tmp_path / 'nope.npz')],
      'missing column': ['--data', _csv(tmp_path / 'c.csv', x, y, label='target')],
      'missing array': ['--data', str(_save(tmp_path / 'noy.npz', x=x))],
      'nan in npz': ['--data', _npz(tmp_path / 'nan.npz', x_nan, y)],
      'nan in csv': ['--data', _csv(tmp_path / 'nan.csv', x_nan, y)],
      'text in csv': ['--data', str(_text(tmp_path / 't.csv', 'a,label\n1,0\nx,1\n'))],
      'too few of a class': ['--data', _npz(tmp_path / 'few.npz', x, few), '--folds', '5'],
      'empty grid': ['--rates', '1e-3:1:0'],
      'empty list': ['--rates', ','],
      'malformed grid': ['--rates', '1e-3:1'],
      'negative rate': ['--rates', '0.1,-1'],
      'unknown kind': ['--kind', 'adamx'],
      'bad extension': ['--data', str(_text(tmp_path / 'd.txt', '1,2\n'))],
      'bad option': ['--epochs', '0'],
  }


def _save(path, **arrays):
  np.savez(path, **arrays)
  return path


def _text(path, text):
  path.write_text(text)
  return path


EXPECTED = {
    'missing file': 'no such file',
    'missing column': "no 'label' column; the columns are 'f0'",
    'missing array': "missing array 'y'",
    'nan in npz': 'NaN or infinite values in 1 rows (first: row 7)',
    'nan in csv': "line 9, column 'f2': 'nan' is NaN or infinite",
    'text in csv': "line 3, column 'a': 'x' is not a number",
    'too few of a class': 'class 2 has 1 training example, fewer than --folds 5',
    'empty grid': 'the grid is empty',
    'empty list': 'the grid is empty',
    'malformed grid': 'expected START:STOP:NUM',
    'negative rate': "'-1' must be finite and non-negative",
    'unknown kind': "--kind 'adamx': unknown",
    'bad extension': 'expected a .npz file',
    'bad option': "argument --epochs: '0' must be at least 1",
}


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
  out = tmp_path / 'out'
  args = _bad_inputs(tmp_path)[case]
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  captured = capsys.readouterr()
  assert status == 2
  lines = captured.err.splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith('wdax: error: ')
  assert EXPECTED[case] in lines[0]
  assert not out.exists()


def test_bad_input_from_the_shell_is_one_line(tmp_path):
  out = tmp_path / 'out'
  done = _run('sweep', '--data', str(tmp_path / 'missing.csv'), '--out', str(out))
  assert done.returncode == 2
  assert done.stderr.splitlines() == [
      f'wdax: error: --data {tmp_path / "missing.csv"}: no such file'
  ]
  assert not out.exists()


def test_parse_rates():
  assert cli.parse_rates('1e-4:10:6') == [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
  assert cli.parse_rates('5') == [5.0]
  assert cli.parse_rates('0.1, 0, 0.1') == [0.0, 0.1]
  assert cli.parse_rates('1e-2:1e-2:1') == [0.01]


@pytest.mark.parametrize(
    ('mask', 'expected'),
    [
        ('flax', {'kernel': 'yes', 'query/bias': 'no', 'embedding': 'no', 'scale': 'no'}),
        ('matrices', {'kernel': 'yes', 'query/bias': 'yes', 'embedding': 'yes', 'scale': 'no'}),
        ('flax+embeddings', {'kernel': 'yes', 'query/bias': 'no', 'embedding': 'yes', 'scale': 'no'}),
    ],
)
def test_describe_shows_the_mask(mask, expected, capsys):
  assert cli.main(['describe', '--mask', mask]) == 0
  text = capsys.readouterr().out
  rows = {}
  for line in text.splitlines():
    fields = line.split()
    if fields and '/' in fields[0]:
      rows[fields[0]] = fields
  attention = 'MultiHeadDotProductAttention_0'
  assert rows[f'{attention}/query/kernel'][-2] == expected['kernel']
  assert rows[f'{attention}/query/bias'][-2] == expected['query/bias']
  assert rows['Embed_0/embedding'][-2] == expected['embedding']
  assert rows['LayerNorm_0/scale'][-2] == expected['scale']
  assert 'decayed:' in text


def test_describe_mlp(capsys):
  assert cli.main(['describe', '--model', 'mlp', '--hidden', '32,16']) == 0
  text = capsys.readouterr().out
  assert 'Dense_2/kernel' in text and '(16, 10)' in text


def test_no_command_is_bad_input(capsys):
  assert cli.main([]) == 2
  assert capsys.readouterr().err.startswith('wdax: error: ')
