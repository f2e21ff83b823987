"""LayerNorm over the last axis, with an optional formulation whose backward pass is fast on CPU.

MXNet 1.9's ``LayerNorm`` operator has a fast forward kernel but computes its backward with
six generic broadcast and four generic reduction kernels, about 15x the forward's time. In a
BERT training step on CPU that is 10-20% of the whole step.

With ``fast_backward`` the same function is built from operators whose gradients are cheap:

* centring: the row mean is a matrix-vector product with ``1/C``, broadcast back by an outer
  product (both ``FullyConnected``);
* normalisation: ``L2Normalization`` (one fused kernel each way) of the centred rows, times
  ``sqrt(C)``, with ``eps * C`` inside the square root -- exactly ``(x - mean) / sqrt(var + eps)``;
* affine: ``gamma`` and ``beta`` are broadcast to ``(N, C)`` by outer products with a column
  of ones, so that their gradients are matrix products instead of reductions over rows.

Forward + backward is 2x (C=128) to 2.3x (C=768) faster on one thread; the forward alone is
2-4x slower, and three (N, C) intermediates are kept for the backward pass instead of two (N,)
statistics. :func:`gluonbert.perf.optimize` therefore turns it on for training only, and only
up to :data:`FAST_BACKWARD_MAX_WIDTH` channels: at C=128 (the d2l model, where LayerNorm is
~20% of a pretraining step) it saves ~15% of the step; at C=768 (BERT-base) only ~3%, for
13% more peak memory. Parameters (``gamma``, ``beta``) and results are those of
``nn.LayerNorm`` (equal to ~1e-6).
"""
from mxnet.gluon import nn

__all__ = ['LayerNorm', 'FAST_BACKWARD_MAX_WIDTH']

#: Widest last axis for which :func:`gluonbert.perf.optimize` enables ``fast_backward``.
FAST_BACKWARD_MAX_WIDTH = 256


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` on the last axis; set ``fast_backward`` (before hybridizing) for training.

    Parameters
    ----------
    epsilon : float
    in_channels : int
        Width C of the last axis (required).
    fast_backward : bool
        Use the formulation with a fast backward pass (see the module docstring).

    Inputs
    ------
    data : (..., C)

    Outputs
    -------
    out : (..., C)
    """

    def __init__(self, epsilon=1e-12, in_channels=0, fast_backward=False, prefix=None,
                 params=None):
        if not in_channels:
            raise ValueError('gluonbert LayerNorm needs in_channels (the width C)')
        super().__init__(axis=-1, epsilon=epsilon, in_channels=in_channels, prefix=prefix,
                         params=params)
        self._channels = in_channels
        self.fast_backward = fast_backward

    @property
    def channels(self):
        """Width C of the normalised (last) axis."""
        return self._channels

    def hybrid_forward(self, F, data, gamma, beta):
        if not self.fast_backward:
            return super().hybrid_forward(F, data, gamma, beta)
        c = self._channels
        x = F.reshape(data, shape=(-1, c))                                      # (N, C)
        ones = F.ones_like(F.slice_axis(x, axis=1, begin=0, end=1))             # (N, 1)
        mean = F.FullyConnected(x, F.ones(shape=(1, c)) / c, no_bias=True,
                                num_hidden=1)                                   # (N, 1)
        centred = x - F.FullyConnected(mean, F.ones(shape=(c, 1)), no_bias=True,
                                       num_hidden=c)                            # (N, C)
        normed = F.L2Normalization(centred, mode='instance', eps=self._epsilon * c)
        scale = F.FullyConnected(ones, F.reshape(gamma * (c ** 0.5), shape=(-1, 1)),
                                 no_bias=True, num_hidden=c)                    # (N, C)
        shift = F.FullyConnected(ones, F.reshape(beta, shape=(-1, 1)), no_bias=True,
                                 num_hidden=c)                                  # (N, C)
        return F.reshape_like(normed * scale + shift, data)
