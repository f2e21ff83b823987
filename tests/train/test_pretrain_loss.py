"""The pretraining loss graph (PretrainingSums) against NumPy: sums, statistics, gradient."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluonbert import kernels as cpu_kernels
from gluonbert.train.pretrain import PretrainingLoss, PretrainingSums

PRETRAIN_STATS = PretrainingLoss.names


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize('kernel', [False, True], ids=['log_softmax', 'cpu_kernel'])
def test_pretraining_sums_match_numpy_and_give_the_softmax_gradient(kernel):
    if kernel and not cpu_kernels.available():
        pytest.skip('no C++ compiler: the kernels cannot be built here')
    rng = np.random.RandomState(0)
    b, p, v = 3, 4, 11
    mlm = (rng.normal(size=(b, p, v)) * 5).astype('float32')
    nsp = rng.normal(size=(b, 2)).astype('float32')
    ids = rng.randint(0, v, (b, p)).astype('int32')
    ids[0, :2] = mlm[0, :2].argmax(-1)               # some hits
    weights = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype='float32')
    labels = np.array([0, 1, 1], dtype='int32')
    block = PretrainingSums(kernel)
    block.hybridize(static_alloc=True)
    scores = mx.nd.array(mlm)
    scores.attach_grad()
    for _ in range(2):                               # the cached graph, twice
        with autograd.record():
            mlm_sum, nsp_sum, stats = block(mx.nd.array(nsp), scores, mx.nd.array(ids, dtype='int32'),
                                            mx.nd.array(weights), mx.nd.array(labels, dtype='int32'))
        mlm_sum.backward()
        logp = _log_softmax(mlm)
        ce = -np.take_along_axis(logp, ids[..., None], -1)[..., 0]
        nsp_ce = -_log_softmax(nsp)[np.arange(b), labels]
        expected = {'mlm_loss_sum': (ce * weights).sum(),
                    'mlm_correct': ((mlm.argmax(-1) == ids) * weights).sum(),
                    'mlm_weight': weights.sum(), 'nsp_loss_sum': nsp_ce.sum(),
                    'nsp_correct': (nsp.argmax(-1) == labels).sum(), 'nsp_count': b}
        got = dict(zip(PRETRAIN_STATS, stats.asnumpy()))
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)
        assert expected['mlm_correct'] >= 2
        np.testing.assert_allclose(mlm_sum.asnumpy()[0], expected['mlm_loss_sum'], rtol=1e-5)
        np.testing.assert_allclose(nsp_sum.asnumpy()[0], expected['nsp_loss_sum'], rtol=1e-5)
        # d(sum w * ce)/d scores = w * (softmax - onehot); padding rows get no gradient.
        onehot = np.eye(v, dtype='float32')[ids]
        grad = weights[..., None] * (np.exp(logp) - onehot)
        np.testing.assert_allclose(scores.grad.asnumpy(), grad, rtol=1e-5, atol=1e-6)
