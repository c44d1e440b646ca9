"""Tests of the command line's persistent compilation cache
(wdax/cli/caching.py): where it goes, that a second run loads every program
and computes the same numbers, and that bad input makes no folder."""

import json
import os
import re
import stat

import jax
import pytest
from support import cli_inputs

from wdax import cli
from wdax.cli import caching

TINY = ['--rates', '1e-3,1', *cli_inputs.TINY]


def _run(*args, env=()):
  return cli_inputs.run('sweep', *args, env=env)


def _numbers(out):
  """results.json less what differs between equal runs: the wall times and
  the command line."""
  report = json.loads((out / 'results.json').read_text())
  report.pop('command')
  report['run'] = {k: v for k, v in report['run'].items() if not k.endswith('_seconds')}
  return report


def _loaded(stdout):
  """``(loaded, compiled)`` from the summary line."""
  found = re.search(r'\((\d+) programs loaded from and (\d+) compiled into the cache ', stdout)
  return int(found[1]), int(found[2])


@pytest.mark.slow
def test_a_second_run_loads_every_program_and_computes_the_same_numbers(tmp_path):
  cache = tmp_path / 'cache'
  first = _run(*TINY, '--cache', str(cache), '--out', str(tmp_path / 'a'))
  assert first.returncode == 0, first.stderr[-3000:]
  loaded, compiled = _loaded(first.stdout)
  assert loaded == 0 and compiled >= 3  # init, run, the test metrics at least
  assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
  assert any(name.endswith('-cache') for name in os.listdir(cache))

  second = _run(*TINY, '--cache', str(cache), '--out', str(tmp_path / 'b'))
  assert second.returncode == 0, second.stderr[-3000:]
  assert _loaded(second.stdout) == (compiled, 0)

  uncached = _run(*TINY, '--no-cache', '--out', str(tmp_path / 'c'))
  assert uncached.returncode == 0, uncached.stderr[-3000:]
  assert 'compilation included, no cache' in uncached.stdout
  reference = _numbers(tmp_path / 'c')
  assert _numbers(tmp_path / 'a') == reference
  assert _numbers(tmp_path / 'b') == reference


@pytest.mark.slow
def test_the_default_folder_is_under_xdg_cache_home(tmp_path):
  done = _run(*TINY, '--out', str(tmp_path / 'out'),
              env={'WDAX_CACHE': None, 'XDG_CACHE_HOME': str(tmp_path / 'xdg')})
  assert done.returncode == 0, done.stderr[-3000:]
  folder = tmp_path / 'xdg' / 'wdax'
  assert f'compiled into the cache {folder})' in done.stdout
  assert any(name.endswith('-cache') for name in os.listdir(folder))


@pytest.mark.slow
def test_a_default_folder_that_cannot_be_made_is_noted_and_the_sweep_runs(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  done = _run(*TINY, '--out', str(tmp_path / 'out'),
              env={'WDAX_CACHE': None, 'XDG_CACHE_HOME': str(blocker)})
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'wdax: note: no compilation cache, {blocker}/wdax cannot be made' in done.stderr
  assert 'compilation included, no cache' in done.stdout
  assert (tmp_path / 'out' / 'results.json').exists()


def test_bad_input_makes_no_cache_folder(tmp_path, capsys):
  cache = tmp_path / 'cache'
  status = cli.main(['sweep', *TINY, '--folds', '1', '--cache', str(cache), '--out', str(tmp_path / 'o')])
  assert status == 2 and not cache.exists()
  data = tmp_path / 'bad.csv'
  data.write_text('a,label\n1,0\n')
  status = cli.main(['sweep', '--data', str(data), *TINY, '--cache', str(cache), '--out', str(tmp_path / 'o')])
  assert status == 2 and not cache.exists() and not (tmp_path / 'o').exists()
  err = capsys.readouterr().err
  assert err.count('\n') == 2 and err.startswith('wdax: error: ')


@pytest.mark.parametrize(
    'args, message',
    [
        (['--cache', 'FILE'], '--cache FILE: exists and is not a folder'),
        (['--cache', 'DIR', '--no-cache'], '--cache and --no-cache: give one of them'),
        (['--cache', ''], '--cache: give a folder'),
    ],
)
def test_a_bad_cache_is_one_line_and_status_2(tmp_path, capsys, args, message):
  (tmp_path / 'FILE').write_text('')
  args = [a.replace('FILE', str(tmp_path / 'FILE')).replace('DIR', str(tmp_path / 'DIR')) for a in args]
  message = message.replace('FILE', str(tmp_path / 'FILE'))
  status = cli.main(['sweep', *TINY, *args, '--out', str(tmp_path / 'out')])
  err = capsys.readouterr().err
  assert status == 2
  assert err == f'wdax: error: {message}\n'
  assert not (tmp_path / 'out').exists() and not (tmp_path / 'DIR').exists()


def _args(cache=None, no_cache=False):
  return cache, no_cache


@pytest.fixture
def no_jax_cache_folder():
  """JAX's cache folder unset around the test (conftest gives the tests'
  programs one)."""
  before = jax.config.jax_compilation_cache_dir
  jax.config.update('jax_compilation_cache_dir', None)
  try:
    yield
  finally:
    jax.config.update('jax_compilation_cache_dir', before)


@pytest.mark.usefixtures('no_jax_cache_folder')
def test_the_folder_first_given_wins(monkeypatch, tmp_path):
  monkeypatch.delenv('WDAX_CACHE', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert caching.folder(*_args()) == str(tmp_path / 'xdg' / 'wdax')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert caching.folder(*_args()) == str(tmp_path / 'home' / '.cache' / 'wdax')
  monkeypatch.setenv('WDAX_CACHE', str(tmp_path / 'env'))
  assert caching.folder(*_args()) == str(tmp_path / 'env')
  monkeypatch.setenv('WDAX_CACHE', '')
  assert caching.folder(*_args()) is None
  assert caching.folder(*_args(cache=str(tmp_path / 'flag'))) == str(tmp_path / 'flag')
  assert caching.folder(*_args(cache=str(tmp_path / 'flag'), no_cache=True)) is None
  jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'jax'))
  monkeypatch.setenv('WDAX_CACHE', str(tmp_path / 'env'))
  assert caching.folder(*_args()) == str(tmp_path / 'jax')
  assert caching.folder(*_args(cache=str(tmp_path / 'flag'))) == str(tmp_path / 'flag')
