"""The environment of a subprocess that runs JAX on simulated host devices."""

import os


def env(devices: int) -> dict[str, str]:
  """This process's environment, with JAX on the CPU and ``devices`` host
  devices: a device count already in XLA_FLAGS is overridden, the other
  flags are kept."""
  out = dict(os.environ)
  flags = out.get('XLA_FLAGS', '').replace('--xla_force_host_platform_device_count', '--ignored')
  out['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={devices}'.strip()
  out['JAX_PLATFORMS'] = 'cpu'
  return out
