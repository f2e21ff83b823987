"""BERT's weight initialiser: a normal distribution truncated at two standard deviations."""
import mxnet as mx
import numpy as np

__all__ = ['TruncNorm']


@mx.init.alias('gluonbert_truncnorm')  # GluonNLP registers its own class as 'truncnorm'
class TruncNorm(mx.init.Initializer):
    """``N(0, stdev)`` with draws beyond ``2 * stdev`` redrawn (TF's ``truncated_normal``).

    Draws come from MXNet's random generator, so ``mx.random.seed`` makes them repeatable.
    """

    def __init__(self, stdev=0.02):
        super().__init__(stdev=stdev)
        self._stdev = stdev

    def dumps(self):
        return f'["gluonbert_truncnorm", {{"stdev": {self._stdev}}}]'

    def _init_weight(self, name, arr):
        # Draw on the CPU with MXNet's generator (seeded by mx.random.seed), fix the tails.
        draws = mx.nd.random.normal(0, 1, shape=arr.shape, ctx=mx.cpu()).asnumpy()
        bad = np.abs(draws) > 2
        while bad.any():
            draws[bad] = mx.nd.random.normal(0, 1, shape=(int(bad.sum()),), ctx=mx.cpu()).asnumpy()
            bad = np.abs(draws) > 2
        arr[:] = (draws * self._stdev).astype(arr.dtype)    # an mx.nd or mx.np array
