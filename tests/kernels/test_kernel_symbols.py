"""The CPU kernels still load and compute when libmxnet.so is in the global symbol scope.

Horovod's MXNet extension (``horovod.mxnet``'s ``mpi_lib``) is linked to libmxnet.so and loaded
with RTLD_GLOBAL, which puts libmxnet.so's exported symbols in front of every library loaded
later. libmxnet.so exports its own, differently laid out build of MXNet's ``lib_api`` classes
(``mxnet::ext::CustomOp::CustomOp(char const*)``, ``CustomStatefulOp``'s vtable); without
``-Wl,-Bsymbolic`` the kernels library bound its registrations to them and died with SIGFPE
(a division by the bucket count of a map that libmxnet's constructor had laid out elsewhere).
The test repeats what Horovod does, without needing Horovod, in a fresh process.
"""
import subprocess
import sys

SCRIPT = r'''
import ctypes
import mxnet as mx
import numpy as np
from mxnet import autograd
ctypes.CDLL(mx.base._LIB._name, mode=ctypes.RTLD_GLOBAL)   # as horovod.mxnet's mpi_lib does
from gluonbert import kernels
from gluonbert.model.layer_norm import LayerNorm
assert kernels.available(), 'kernels did not load'
rng = np.random.RandomState(0)
x = mx.nd.array(rng.normal(size=(4, 3, 16)))
gamma, beta = (mx.nd.array(rng.normal(size=16)) for _ in range(2))
results = []
for kernel in (False, True):
    block = LayerNorm(1e-12, 16)
    block.initialize()
    block.gamma.set_data(gamma)
    block.beta.set_data(beta)
    block.kernel = kernel
    block.hybridize(static_alloc=True)
    data = x.copy()
    data.attach_grad()
    with autograd.record():
        out = block(data)
    out.backward()
    results.append((out.asnumpy(), data.grad.asnumpy()))
for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
print('kernels ok')
'''


def test_kernels_load_after_libmxnet_is_made_global():
    proc = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert 'kernels ok' in proc.stdout
