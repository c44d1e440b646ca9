"""Tests of wdax.sweep._devices: the devices a sweep shards over."""

import jax
import pytest

from wdax.sweep import _devices


def test_a_count_takes_the_first_devices_and_none_takes_all():
  assert _devices.devices(None) == jax.devices()
  assert _devices.devices(1) == jax.devices()[:1]
  with pytest.raises(ValueError, match='devices=99'):
    _devices.devices(99)
