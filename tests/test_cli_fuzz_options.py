"""The options of ``wdax sweep`` and ``wdax describe``, fuzzed (issue 12): one
bad option at a time, options combined, the built-in data sets with each
criterion, and describe's options. The contract every run must keep is in
tests/support/cli_fuzzing.py."""

import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.cli_fuzzing import BAD
from support.cli_fuzzing import CHEAP
from support.cli_fuzzing import DESCRIBE
from support.cli_fuzzing import GOOD
from support.cli_fuzzing import JUNK
from support.cli_fuzzing import SETTINGS
from support.cli_fuzzing import check
from support.cli_fuzzing import flag_value
from support.examples import examples

from wdax.cli.requests import CRITERIA
from wdax.sweep.datasets import NAMES as DATASETS

pytestmark = pytest.mark.usefixtures('devices_started')


def _bad_out(out):
  """A bad --out value, made real on the disk where it needs to be."""
  under = os.path.join(os.path.dirname(out), 'a-file')
  with open(under, 'w') as f:
    f.write('not a folder')
  return st.sampled_from(['', under, os.path.join(under, 'x'), out + '\0', 'x' * 300])


# --- one bad option ---------------------------------------------------------


@settings(max_examples=examples(200), **SETTINGS)
@given(data=st.data())
def test_one_bad_option_is_refused_by_name(data, data_file):
  flag = data.draw(st.sampled_from([*BAD, '--data', '--out', '--cache']), label='flag')
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    cache = os.path.join(tmp, 'cache')
    if flag == '--data':
      folder = os.path.join(tmp, 'folder.npz')
      os.mkdir(folder)
      # Built-in names are matched exactly: anything near one is a path.
      value = data.draw(st.sampled_from([
          os.path.join(tmp, 'missing.npz'), folder, data_file[:-4] + '.txt', '',
          data_file + '\0', 'Digits', 'iris', ' text', 'wine.csv',
      ]), label='value')
    elif flag in ('--out', '--cache'):
      value = data.draw(_bad_out(out if flag == '--out' else cache), label='value')
    else:
      value = data.draw(st.sampled_from(BAD[flag]), label='value')
    options = {'--data': data_file, '--out': out, **CHEAP, flag: value}
    argv = ['sweep', '--quiet']
    for name, v in options.items():
      argv += flag_value(data.draw, name, v)
    assert check(argv, out, names=[flag]) is not None
    assert not os.path.exists(cache)


# --- options combined -------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=24, **SETTINGS)
@given(data=st.data())
def test_options_combined(data, data_file):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    options = [['--data', data_file], ['--out', out]]
    for flag in GOOD:
      # Mostly good, so that about half the runs train and extreme good
      # values meet (--lr 1e38 with --one-se); test_one_bad_option_is_refused_by_name
      # covers the bad ones. The defaults of the CHEAP options train for
      # long: they are never left out.
      how = data.draw(
          st.sampled_from(['good'] * 24 + ['bad', 'junk'] + ([] if flag in CHEAP else ['absent'] * 4)),
          label=flag,
      )
      values = {'good': st.sampled_from(GOOD[flag]), 'bad': st.sampled_from(BAD[flag]), 'junk': JUNK}
      if how != 'absent':
        options.append(flag_value(data.draw, flag, data.draw(values[how], label=f'{flag} value')))
    for flag in ('--one-se', '--quiet'):
      if data.draw(st.booleans(), label=flag):
        options.append([flag])
    argv = ['sweep', *sum(data.draw(st.permutations(options), label='order'), [])]
    check(argv, out, names=[*(o[0].split('=')[0] for o in options), data_file])


# --- built-in data sets -----------------------------------------------------


@pytest.mark.slow
@settings(max_examples=8, **SETTINGS)
@given(data=st.data())
def test_builtin_data_sets(data):
  name = data.draw(st.sampled_from(sorted(DATASETS)), label='data set')
  criterion = data.draw(st.sampled_from(['loss', 'accuracy', 'r2', 'perplexity']), label='criterion')
  kinds = data.draw(st.sampled_from(['adamw', 'l1,cautious']), label='kinds')
  extra = data.draw(st.sampled_from(
      [[], ['--lr', '1e-3,1e-2'], ['--dropout', '0,0.3'], ['--prune', '1:2'], ['--one-se']]
  ), label='options')
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    argv = [
        'sweep', '--data', name, '--criterion', criterion, '--kind', kinds, '--rates', '1e-2,1',
        '--epochs', '2', '--folds', '2', '--hidden', '4', '--batch-size', '64', '--quiet',
        '--devices', '1', '--out', out, *extra,
    ]
    line = check(argv, out, names=['--criterion'])
  # Refused exactly when the data set has no such criterion.
  assert (line is None) == (criterion in CRITERIA[DATASETS[name]]), line


# --- describe ---------------------------------------------------------------


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_describe(data):
  argv, bad = ['describe'], []
  for flag, (good, refused) in DESCRIBE.items():
    how = data.draw(st.sampled_from(['absent', 'good', 'good', 'bad', 'junk']), label=flag)
    if how == 'absent':
      continue
    value = data.draw(
        st.sampled_from(good) if how == 'good' else JUNK if how == 'junk' else st.sampled_from(refused),
        label=f'{flag} value',
    )
    argv += flag_value(data.draw, flag, value)
    if how == 'bad':
      bad.append(flag)
  with tempfile.TemporaryDirectory() as tmp:
    line = check(argv, os.path.join(tmp, 'out'), names=[*DESCRIBE, 'argument'])
  assert (line is not None) >= bool(bad)
