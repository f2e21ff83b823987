"""Dropout that can run on gluonbert's CPU kernel (:mod:`gluonbert.kernels`)."""
from mxnet.gluon import nn

from .. import kernels as cpu_kernels

__all__ = ['Dropout', 'training_flag', 'use_kernels']


def use_kernels(requested):
    """Whether a block built with ``kernels=requested`` runs on gluonbert's CPU kernels: when
    asked for and they load (:func:`gluonbert.kernels.load`, which says why not once)."""
    return bool(requested) and cpu_kernels.load()


def training_flag(F, like):
    """1.0 in training mode, 0.0 otherwise, as a (1,) array on ``like``'s context.

    Library operators are not told MXNet's ``is_train`` flag, so it is read from MXNet's own
    ``Dropout`` on a single 1: in training mode that gives 0 or 2 (p = 0.5), never 1; in
    inference mode exactly 1. A hybridized graph thus follows ``autograd.record()`` /
    ``predict_mode()`` as ``nn.Dropout`` does. The encoder computes it once per forward pass
    and hands it to every block that needs it.
    """
    one = F.ones_like(F.slice_axis(F.reshape(like, shape=(-1,)), axis=0, begin=0, end=1))
    return F.Dropout(one, p=0.5) != 1


class Dropout(nn.Dropout):
    """``nn.Dropout`` (inverted dropout with probability ``rate``), optionally on the CPU kernel.

    With ``kernels`` the mask is drawn by ``gluonbert_dropout``: the same distribution and
    scaling, a different random stream, a 1-byte mask kept for the backward pass.

    Parameters
    ----------
    rate : float
        Probability of zeroing a value.
    kernels : bool
        Run on gluonbert's CPU kernels (CPU contexts only).

    Inputs
    ------
    data : any shape
    training : (1,) or None
        :func:`training_flag` when the caller has it (else computed here).

    Outputs
    -------
    out : same shape as ``data``
    """

    def __init__(self, rate, kernels=False, prefix=None, params=None):
        super().__init__(rate, prefix=prefix, params=params)
        self._kernels = rate > 0 and use_kernels(kernels)

    def hybrid_forward(self, F, data, training=None):
        if not self._kernels:
            return super().hybrid_forward(F, data)
        if training is None:
            training = training_flag(F, data)
        # identity: an MXNet operator, which honours grad_req='add', receives the gradient
        # (library operators always overwrite theirs).
        return F.gluonbert_dropout(F.identity(data), training, p=self._rate)[0]
