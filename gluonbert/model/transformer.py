"""One post-LayerNorm transformer cell of BERT: self-attention, then a GELU feed-forward net.

Child names (``attention_cell``, ``proj``, ``layer_norm``, ``ffn.ffn_1``, ``ffn.ffn_2``,
``ffn.layer_norm``) are the checkpoint names of GluonNLP's ``BERTEncoderCell``.
"""
from mxnet.gluon import HybridBlock, nn

from .attention import SelfAttention
from .layer_norm import ResidualLayerNorm

__all__ = ['PositionwiseFFN', 'TransformerCell']


class PositionwiseFFN(HybridBlock):
    """``LayerNorm(x + Dropout(W2 GELU(W1 x + b1) + b2))``, applied at every position.

    Parameters
    ----------
    units : int
        Model width C.
    hidden_size : int
        Inner width (4 C in BERT).
    dropout : float
        Dropout on the output before the residual sum.
    layer_norm_eps : float
        LayerNorm epsilon.
    kernels : bool
        The residual LayerNorm on gluonbert's CPU kernels.

    Inputs
    ------
    x : (T, B, C)
    training : (1,) or None
        :func:`~gluonbert.model.dropout.training_flag`, for the kernels.

    Outputs
    -------
    y : (T, B, C)
    """

    def __init__(self, units, hidden_size, dropout=0.0, layer_norm_eps=1e-12, kernels=False,
                 weight_initializer=None, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.ffn_1 = nn.Dense(hidden_size, flatten=False, in_units=units,
                                  weight_initializer=weight_initializer, prefix='ffn_1_')
            self.ffn_2 = nn.Dense(units, flatten=False, in_units=hidden_size,
                                  weight_initializer=weight_initializer, prefix='ffn_2_')
            self.layer_norm = ResidualLayerNorm(layer_norm_eps, units, dropout, kernels)

    def hybrid_forward(self, F, x, training=None):
        h = F.LeakyReLU(self.ffn_1(x), act_type='gelu')      # exact (erf) GELU, as in BERT
        return self.layer_norm(self.ffn_2(h), x, training)  # LayerNorm(x + Dropout(ffn_2(h)))


class TransformerCell(HybridBlock):
    """Self-attention sub-layer then feed-forward sub-layer, each with residual + LayerNorm.

    Parameters
    ----------
    units, hidden_size, num_heads : int
        Width C, feed-forward width, number of attention heads.
    dropout : float
        Dropout on attention weights and on both sub-layer outputs.
    layer_norm_eps : float
        LayerNorm epsilon.
    kernels, inference, return_weights : bool
        See :class:`SelfAttention`.

    Inputs
    ------
    x : (T, B, C)
    valid_length : (B * H,) or None
        Real length of each sequence, repeated per head (see :class:`SelfAttention`).
    attention_bias : (B * H, T, T) or None
        Additive attention mask, used by MXNet's operators instead of ``valid_length`` when
        given (faster; see :class:`SelfAttention`).
    training : (1,) or None
        :func:`~gluonbert.model.dropout.training_flag`, for the kernels.

    Outputs
    -------
    y : (T, B, C), or (1, B, C) with ``cls_only`` set
    attention_weights : (B, H, T, T)
    """

    def __init__(self, units, hidden_size, num_heads, dropout=0.0, layer_norm_eps=1e-12,
                 kernels=False, inference=False, return_weights=True, weight_initializer=None,
                 prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.attention_cell = SelfAttention(units, num_heads, dropout, kernels, inference,
                                                return_weights,
                                                weight_initializer=weight_initializer)
            self.proj = nn.Dense(units, flatten=False, in_units=units,
                                 weight_initializer=weight_initializer, prefix='proj_')
            self.layer_norm = ResidualLayerNorm(layer_norm_eps, units, dropout, kernels)
            self.ffn = PositionwiseFFN(units, hidden_size, dropout, layer_norm_eps, kernels,
                                       weight_initializer=weight_initializer)
        # True while its encoder is asked for the [CLS] row only (BERTEncoder.cls_rows_only):
        # the output is then (1, B, C).
        self.cls_only = False

    def hybrid_forward(self, F, x, valid_length=None, attention_bias=None, training=None):
        context, weights = self.attention_cell(x, valid_length, attention_bias, training)
        if self.cls_only:
            # Only the [CLS] row of this cell's output is read: the projection, residual,
            # LayerNorms and feed-forward layers act per position, so they run on row 0 alone.
            context = F.slice_axis(context, axis=0, begin=0, end=1)
            x = F.slice_axis(x, axis=0, begin=0, end=1)
        h = self.layer_norm(self.proj(context), x, training)  # LN(x + Dropout(proj(context)))
        return self.ffn(h, training), weights
