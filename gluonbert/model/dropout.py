"""Dropout that can run on gluonbert's CPU kernel (:mod:`gluonbert.kernels`)."""
from mxnet.gluon import nn

__all__ = ['Dropout', 'training_flag']


def training_flag(F, like):
    """1.0 in training mode, 0.0 otherwise, as a (1,) array on ``like``'s context.

    Library operators are not told MXNet's ``is_train`` flag, so it is read from MXNet's own
    ``Dropout`` on a single 1: in training mode that gives 0 or 2 (p = 0.5), never 1; in
    inference mode exactly 1. A hybridized graph thus follows ``autograd.record()`` /
    ``predict_mode()`` as ``nn.Dropout`` does.
    """
    one = F.ones_like(F.slice_axis(F.reshape(like, shape=(-1,)), axis=0, begin=0, end=1))
    return F.Dropout(one, p=0.5) != 1


class Dropout(nn.Dropout):
    """``nn.Dropout`` (inverted dropout with probability ``rate``), optionally on the CPU kernel.

    Set ``kernel`` (before hybridizing; :func:`gluonbert.model.optimize.optimize` does it on CPU) to
    draw the mask with ``gluonbert_dropout``: the same distribution and scaling, a
    different random stream, a 1-byte mask kept for the backward pass.

    Parameters
    ----------
    rate : float
        Probability of zeroing a value.

    Inputs
    ------
    data : any shape

    Outputs
    -------
    out : same shape as ``data``
    """

    def __init__(self, rate, prefix=None, params=None):
        super().__init__(rate, prefix=prefix, params=params)
        self.kernel = False

    def hybrid_forward(self, F, data):
        if not (self.kernel and self._rate > 0):
            return super().hybrid_forward(F, data)
        # identity: an MXNet operator, which honours grad_req='add', receives the gradient
        # (library operators always overwrite theirs).
        return F.gluonbert_dropout(F.identity(data), training_flag(F, data), p=self._rate)[0]
