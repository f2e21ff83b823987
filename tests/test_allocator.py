"""gluonbert.platform: freed MXNet buffers are reused without page faults."""
import json
import os
import subprocess
import sys

import pytest

from gluonbert.platform import ALLOCATOR_ENV

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

_PROBE = r'''
import json, resource, sys
import gluonbert
if sys.argv[1] == 'tune':
    gluonbert.platform.tune_allocator()
import mxnet as mx
x = mx.nd.random.normal(shape=(4096, 128))
w = mx.nd.random.normal(shape=(4096, 128))
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # A 64 MiB operator output (above glibc's largest mmap threshold), as a training step's
    # score matrix: allocated by an MXNet engine thread, freed when it dies.
    a = mx.nd.FullyConnected(x, w, no_bias=True, num_hidden=4096)
    a.wait_to_read()
    del a
    mx.nd.waitall()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
'''

PAGES = 4096 * 4096 * 4 // 4096


def _faults(tune=True, **env):
    full = dict(os.environ, OMP_NUM_THREADS='1')
    for key in list(ALLOCATOR_ENV) + ['GLUONBERT_TUNE_MALLOC']:
        full.pop(key, None)
    full.update(env)
    out = subprocess.run([sys.executable, '-c', _PROBE, 'tune' if tune else 'plain'], env=full, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt only')
def test_tune_allocator_keeps_freed_buffers_mapped():
    untuned = _faults(GLUONBERT_TUNE_MALLOC='0')
    tuned = _faults()
    # Importing gluonbert alone changes no process-wide setting: glibc's defaults stay.
    plain = _faults(tune=False)
    assert min(plain[2:]) > 0.9 * PAGES, plain
    # glibc's default: every 64 MiB buffer is a fresh mmap, each page faults again.
    assert min(untuned) > 0.9 * PAGES, untuned
    # Tuned: once the heap holds the pages (after a step or two), the buffer is mostly reused
    # (glibc may still place one allocation at the heap top and fault it in).
    assert sum(tuned[2:]) < 0.25 * sum(untuned[2:]), (tuned, untuned)
    # The environment variables do the same for a process that imported MXNet first.
    from_env = _faults(tune=False, **ALLOCATOR_ENV)
    assert sum(from_env[2:]) < 0.25 * sum(untuned[2:]), (from_env, untuned)


def test_tune_allocator_is_a_no_op_after_mxnet():
    import mxnet  # noqa: F401  (already imported by the suite; the call must refuse)
    from gluonbert.platform import tune_allocator
    assert tune_allocator() is False
