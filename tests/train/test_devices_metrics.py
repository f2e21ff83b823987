"""Device parsing, the kvstore seam, and metrics (host and on-device sums)."""
import mxnet as mx
import numpy as np
import pytest

from gluonbert.errors import ConfigError
from gluonbert.dist.cluster import make_cluster, parse_devices
from gluonbert.serve.metrics import accuracy, f1_score
from gluonbert.train.metrics import DeviceSums


def test_parse_devices():
    assert parse_devices() == [mx.cpu()]
    assert parse_devices(cpus=3) == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    with pytest.raises(ConfigError, match='both given'):
        parse_devices(gpus='0', cpus=2)
    with pytest.raises(ConfigError, match='comma-separated integers'):
        parse_devices(gpus='zero')
    with pytest.raises(ConfigError, match='GPU'):
        parse_devices(gpus=str(mx.context.num_gpus()))      # one past the last GPU
    with pytest.raises(ConfigError, match='--cpus 0'):
        parse_devices(cpus=0)


def test_cluster_from_kvstore():
    single = make_cluster([mx.cpu()], 'device')
    assert single.kvstore is None and single.rank == 0 and single.num_workers == 1
    double = make_cluster([mx.cpu(0), mx.cpu(1)], 'local')
    assert double.kvstore.type == 'local' and double.is_main and double.num_workers == 1
    with pytest.raises(ConfigError, match="--kvstore 'nccl2'"):
        make_cluster([mx.cpu()], 'nccl2')


def test_accuracy_and_f1():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 0, 1, 1]
    assert accuracy(pred, gold) == pytest.approx(0.6)
    assert f1_score(pred, gold) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert f1_score([0, 0], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])


def test_device_sums_add_up_across_devices_and_reset():
    sums = DeviceSums(['loss', 'count'], [mx.cpu(0), mx.cpu(1)])
    sums.add(0, mx.nd.array([1.5, 2], ctx=mx.cpu(0)))
    sums.add(1, mx.nd.array([0.5, 3], ctx=mx.cpu(1)))
    sums.add(1, mx.nd.array([1.0, 1], ctx=mx.cpu(1)))
    assert sums.read() == {'loss': 3.0, 'count': 6.0}
    assert sums.read() == {'loss': 0.0, 'count': 0.0}
    np.testing.assert_array_equal(sums._totals[1].asnumpy(), [0, 0])
