"""Tests of the wdax command line: a tiny end-to-end sweep, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from wdax import cli
from wdax import sweep

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


def _refused(status, capsys, expected):
  """Asserts exit status 2 and one line on stderr holding ``expected``."""
  captured = capsys.readouterr()
  assert status == 2
  lines = captured.err.splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith('wdax: error: ')
  assert expected in lines[0], lines[0]


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
  out = tmp_path / 'out'
  args = _bad_inputs(tmp_path)[case]
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  _refused(status, capsys, EXPECTED[case])
  assert not out.exists()


# Issue 12: bad input that gave a traceback (or was accepted silently), from
# the issue and from tests/test_cli_fuzz.py: the option or file each case
# writes, and the line it now gets.


def _labelled_twice(path):
  x, y = _blobs()
  lines = ['label,' + ','.join(f'f{i}' for i in range(5)) + ',label']
  lines += [','.join([str(c), *map(str, r), str(c)]) for r, c in zip(x, y)]
  return _text(path, '\n'.join(lines) + '\n')


def _label_missing_on_line_82(path):
  x, y = _blobs()
  _csv(path, x, y)
  with path.open('a') as f:
    f.write('1,2,3,4,5, \n')
  return path


FOUND = {
    'one fold': lambda tmp: (['--folds', '1'], "argument --folds: '1' must be at least 2"),
    'no rows': lambda tmp: (
        ['--data', _npz(tmp / 'empty.npz', np.zeros((0, 3)), np.zeros(0))],
        'empty.npz: x has no rows; it has shape (0, 3)',
    ),
    'no features': lambda tmp: (
        ['--data', _npz(tmp / 'thin.npz', np.zeros((80, 0)), np.arange(80) % 3)],
        'thin.npz: x has no features; it has shape (80, 0)',
    ),
    'complex x': lambda tmp: (
        ['--data', _npz(tmp / 'z.npz', _blobs()[0] + 1j, _blobs()[1])],
        'z.npz: x must be real; it has dtype complex128',
    ),
    'not utf-8': lambda tmp: (
        ['--data', str(_bytes(tmp / 'l1.csv', b'a,label\n1,0\n\xe9,1\n'))],
        'l1.csv, line 3: byte 0xe9 is not UTF-8 text',
    ),
    'two label columns': lambda tmp: (
        ['--data', str(_labelled_twice(tmp / 'two.csv'))],
        "two.csv: the 'label' column appears 2 times (columns 1, 7); keep one",
    ),
    'empty label': lambda tmp: (
        ['--data', str(_label_missing_on_line_82(tmp / 'e.csv'))],
        "e.csv, line 82, column 'label': the label is empty",
    ),
    'NUL in a header': lambda tmp: (
        ['--data', str(_bytes(tmp / 'n.csv', b'f0\0,f1,label\n' + b'1,2,0\n3,4,1\n' * 12))],
        'n.csv, line 1: a NUL byte; save the file as UTF-8 text',
    ),
    'huge field': lambda tmp: (
        ['--data', str(_text(tmp / 'h.csv', 'a,label\n' + '1' * 200_000 + ',0\n'))],
        'h.csv, line 2: not valid CSV (field larger than field limit (131072))',
    ),
    'negative seed': lambda tmp: (['--seed', '-1'], "argument --seed: '-1' must be at least 0"),
    'epochs past int32': lambda tmp: (
        ['--epochs', '99999999999999999999'],
        "argument --epochs: '99999999999999999999' must be at most 2147483647",
    ),
    'rate past float32': lambda tmp: (
        ['--rates', '1e-3,1e39'], "--rates: '1e39' must be at most 3.402823e+38 (float32)"
    ),
    'lr past float32': lambda tmp: (
        ['--lr', '1e39'], "argument --lr: '1e39' must be at most 3.402823e+38 (float32)"
    ),
    'a million rates': lambda tmp: (
        ['--rates', '1e-3:1:1000000'], 'at most 1000 rates (NUM is 1000000)'
    ),
    'an MLP past the memory': lambda tmp: (
        ['--data', _npz(tmp / 'd.npz', *_blobs()), '--hidden', '2147483647'],
        '--hidden 2147483647 --seeds 1: training MLP(2147483647) on 5 features needs '
        'at least ',
    ),
    'seeds past the memory': lambda tmp: (
        ['--data', _npz(tmp / 'd.npz', *_blobs()), '--seeds', '2147483647'],
        '--hidden 256 --seeds 2147483647: training MLP(256) on 5 features needs at least ',
    ),
    'folder as data': lambda tmp: (['--data', str(tmp)], f'--data {tmp}: not a file'),
    'newline in a path': lambda tmp: (
        ['--data', str(tmp / 'a\nb.csv')], f'--data {tmp}/a\\nb.csv: no such file'
    ),
}


def _bytes(path, data):
  path.write_bytes(data)
  return path


@pytest.mark.parametrize('case', sorted(FOUND))
def test_issue_12_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
  out = tmp_path / 'out'
  args, expected = FOUND[case](tmp_path)
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  _refused(status, capsys, expected)
  assert not out.exists()


@pytest.mark.parametrize('case', ['empty', 'under a file', 'a file', 'NUL', 'long name'])
def test_issue_12_bad_out_is_refused_before_training(case, tmp_path, capsys):
  a_file = tmp_path / 'a-file'
  a_file.write_text('')
  out, expected = {
      'empty': ('', '--out: give a folder'),
      'under a file': (str(a_file / 'x'), f'--out {a_file}/x: {a_file} is not a folder'),
      'a file': (str(a_file), f'--out {a_file}: exists and is not a folder'),
      'NUL': ('out\0', "--out 'out\\x00': a path cannot hold a NUL character"),
      'long name': (str(tmp_path / ('x' * 300)), 'a name in it is longer than'),
  }[case]
  # A --data that does not exist: the --out check comes first.
  status = cli.main(['sweep', '--data', str(tmp_path / 'none.npz'), '--out', out])
  _refused(status, capsys, expected)
  assert sorted(os.listdir(tmp_path)) == ['a-file']


def test_issue_12_devices_past_the_cores_is_refused(tmp_path):
  # A fresh process, XLA_FLAGS unset: one host device per core is asked for,
  # and no more, whatever --devices says.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = tmp_path / 'out'
  done = subprocess.run(
      [sys.executable, '-m', 'wdax', 'sweep', '--devices', '99', '--out', str(out)],
      capture_output=True, text=True, timeout=600, check=False, env=env,
  )
  cores = os.cpu_count()
  assert done.returncode == 2
  assert done.stderr.splitlines() == [
      f'wdax: error: --devices 99: only {cores} cpu device(s) are available ({cores} '
      'cores; XLA_FLAGS=--xla_force_host_platform_device_count=N simulates more)'
  ]
  assert not out.exists()


def test_issue_12_describe_refuses_a_mask_the_model_cannot_take(capsys):
  status = cli.main(['describe', '--model', 'mlp', '--mask', 'flax+embeddings'])
  _refused(
      status, capsys,
      "--mask flax+embeddings does not fit --model mlp: flax_default(): no parameter "
      "is named 'embedding'; available paths: ['Dense_0/bias', 'Dense_0/kernel',",
  )


@pytest.mark.parametrize(
    ('error', 'shown'),
    [
        ('xla', 'RESOURCE_EXHAUSTED: Out of memory allocating 11880002440 bytes.'),
        ('numpy', 'Unable to allocate 102. GiB for an array with shape (1, 2, 214748365, 64)'),
    ],
)
def test_issue_12_out_of_memory_is_one_line(error, shown, tmp_path, capsys, monkeypatch):
  # Past the low bound of memory that --hidden and --seeds are checked
  # against, running out of memory in XLA or (for a huge --epochs) in NumPy
  # becomes the one line.
  import jax

  def select(*args, **kwargs):
    raise (jax.errors.JaxRuntimeError if error == 'xla' else MemoryError)(shown)

  monkeypatch.setattr(sweep, 'select', select)
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--out', str(out), *TINY])
  _refused(
      status, capsys,
      f'out of memory in the sweep of MLP(16), 2 epochs, 1 seed(s) ({shown}); try a '
      'smaller --hidden, --epochs, --seeds or --chunk-size',
  )
  assert not out.exists()


@pytest.mark.parametrize('rule', [[], ['--one-se']])
def test_a_sweep_diverged_at_every_rate_is_one_line(rule, tmp_path, capsys):
  # lr 1e38 makes every training NaN; wdax.sweep chooses no point with a
  # diverged training, so there is nothing to choose or refit.
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--lr', '1e38', *rule, '--rates', '1e-3,1', *TINY, '--out', str(out)])
  _refused(
      status, capsys,
      'the training diverged (NaN or infinite loss) at every one of the 3 rates with '
      '--kind adamw, so none can be chosen; try a smaller --lr',
  )
  assert not out.exists()


def test_issue_12_help_in_process_returns_0(capsys):
  assert cli.main(['sweep', '--help']) == 0
  assert capsys.readouterr().out.startswith('usage: wdax sweep')


def test_issue_12_a_line_break_in_an_argument_stays_on_one_line(capsys):
  _refused(cli.main(['sweep', 'a\nb\u2028c']), capsys, 'unrecognized arguments: a\\nb\\u2028c')


def test_issue_12_a_held_out_value_too_far_names_its_column(tmp_path, capsys):
  x, y = _blobs()
  x = x.reshape(80, 5, 1)
  # Feature (3, 0) is 0 on every training example; one held-out example
  # sits 1e300 from it, which float32 cannot hold after standardising.
  held_out = sweep.stratified_split(y, 0.5, seed=0)[1]
  x[:, 3, 0] = 0.0
  x[held_out[0], 3, 0] = 1e300
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--data', _npz(tmp_path / 'far.npz', x, y), '--out', str(out), *TINY])
  _refused(status, capsys, 'far.npz: x[:, 3, 0]: a held-out value is too far from the training values')
  assert not out.exists()


def _sweep_json(tmp_path, capsys, *args):
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--rates', '1e-3,1', *TINY, *args, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  text = (out / 'results.json').read_text()
  return json.loads(text, parse_constant=lambda name: pytest.fail(f'{name} in results.json')), captured


def test_issue_12_a_byte_order_mark_does_not_hide_the_label(tmp_path, capsys):
  x, y = _blobs()
  path = tmp_path / 'bom.csv'
  _csv(path, x, np.array(['cat', 'dog', 'eel'])[y])
  path.write_bytes(b'\xef\xbb\xbf' + path.read_bytes())
  report, _ = _sweep_json(tmp_path, capsys, '--data', str(path))
  assert report['data']['classes'] == ['cat', 'dog', 'eel']


def test_issue_12_features_past_1e154_train_as_if_scaled_down(tmp_path, capsys):
  # Standardising is scale-free: x * 2**600 must train exactly as x does.
  x, y = _blobs()
  small, _ = _sweep_json(tmp_path / 'small', capsys, '--data', _npz(tmp_path / 's.npz', x, y))
  huge, _ = _sweep_json(tmp_path / 'huge', capsys, '--data', _npz(tmp_path / 'h.npz', x * 2.0**600, y))
  assert huge['table'] == small['table']


def test_issue_12_a_batch_past_the_training_split_is_the_split(tmp_path, capsys):
  x, y = _blobs()
  path = _npz(tmp_path / 'd.npz', x, y)
  whole, _ = _sweep_json(tmp_path / 'a', capsys, '--data', path, '--batch-size', '2147483647')
  train = whole['data']['train']
  exact, _ = _sweep_json(tmp_path / 'b', capsys, '--data', path, '--batch-size', str(train))
  assert whole['settings']['batch_size'] == train == 39
  assert whole['table'] == exact['table']


@pytest.mark.parametrize('rule', [[], ['--one-se']])
def test_issue_12_a_diverged_rate_writes_null_not_nan(rule, tmp_path, capsys):
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


def test_issue_12_a_path_that_is_not_utf_8_is_shown_escaped(tmp_path, capsys):
  # The byte 0xff in a file name reaches Python as the surrogate \udcff;
  # capsys's stdout is strict UTF-8, as a terminal's is.
  x, y = _blobs()
  path = _npz(tmp_path / 'd\udcff.npz', x, y)
  out = tmp_path / 'out\udcfe'
  status = cli.main(['sweep', '--data', path, '--rates', '1e-3', *TINY, '--out', str(out)])
  captured = capsys.readouterr()
  assert status == 0, captured.err
  assert f'data: {tmp_path}/d\\xff.npz: ' in captured.out
  assert f'wrote {tmp_path}/out\\xfe/results.json' in captured.out
  assert sorted(os.listdir(out)) == ['results.json', 'sweep.png']


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
