"""LayerNorm over the last axis, and the residual ending of a Transformer sub-layer.

MXNet 1.9's ``LayerNorm`` operator has a fast forward kernel but computes its backward pass
with ten generic broadcast and reduction kernels: in a BERT training step on CPU that is 10-20%
of the whole step. Both blocks here can instead run on gluonbert's CPU kernels
(:mod:`gluonbert.kernels`), asked for at construction (``kernels=True``). Parameters
(``gamma``, ``beta``), checkpoint names and results are those of ``nn.LayerNorm`` (equal to
~1e-6).
"""
from mxnet.gluon import nn

from .dropout import training_flag, use_kernels

__all__ = ['LayerNorm', 'ResidualLayerNorm']


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` on the last axis, optionally on gluonbert's CPU kernel.

    Parameters
    ----------
    epsilon : float
    in_channels : int
        Width C of the last axis (required).
    kernels : bool
        Run on gluonbert's CPU kernels (CPU contexts only).

    Inputs
    ------
    data : (..., C)

    Outputs
    -------
    out : (..., C)
    """

    def __init__(self, epsilon=1e-12, in_channels=0, kernels=False, prefix=None, params=None):
        if not in_channels:
            raise ValueError('gluonbert LayerNorm needs in_channels (the width C)')
        super().__init__(axis=-1, epsilon=epsilon, in_channels=in_channels, prefix=prefix,
                         params=params)
        self._kernels = use_kernels(kernels)

    def hybrid_forward(self, F, data, gamma, beta):
        if not self._kernels:
            return super().hybrid_forward(F, data, gamma, beta)
        # Library operators always overwrite their gradient outputs: the identities put MXNet
        # operators, which honour grad_req='add', between them and every input.
        return F.gluonbert_layer_norm(F.identity(data), F.identity(gamma), F.identity(beta),
                                      eps=self._epsilon)[0]


class ResidualLayerNorm(LayerNorm):
    """``LayerNorm(residual + Dropout(data))``: how every Transformer sub-layer ends.

    With ``kernels`` this is one operator (``gluonbert_add_dropout_layer_norm``) that keeps a
    1-byte dropout mask and recomputes the sum in the backward pass, instead of a ``Dropout``
    with a float32 mask, an add and a ``LayerNorm`` that keeps the sum.

    Parameters
    ----------
    epsilon : float
    in_channels : int
        Width C.
    dropout : float
        Dropout probability on ``data``.
    kernels : bool

    Inputs
    ------
    data : (..., C)
        The sub-layer's output.
    residual : (..., C)
        The sub-layer's input.
    training : (1,) or None
        :func:`~gluonbert.model.dropout.training_flag` when the caller has it.

    Outputs
    -------
    out : (..., C)
    """

    def __init__(self, epsilon=1e-12, in_channels=0, dropout=0.0, kernels=False, prefix=None,
                 params=None):
        super().__init__(epsilon=epsilon, in_channels=in_channels, kernels=kernels,
                         prefix=prefix, params=params)
        self._rate = dropout

    def hybrid_forward(self, F, data, residual, training=None, gamma=None, beta=None):
        if not self._kernels:
            if self._rate > 0:
                data = F.Dropout(data, p=self._rate)
            return super().hybrid_forward(F, residual + data, gamma, beta)
        if training is None:
            training = training_flag(F, data)
        return F.gluonbert_add_dropout_layer_norm(
            F.identity(data), F.identity(residual), F.identity(gamma), F.identity(beta),
            training, eps=self._epsilon, p=self._rate)[0]
