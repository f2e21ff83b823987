"""Multi-head self-attention with one fused QKV projection.

The block keeps three projection matrices (checkpoint names ``proj_query``, ``proj_key``,
``proj_value``, as in GluonNLP and in Google's BERT) but multiplies the input by all three in a
single GEMM: the weights are interleaved head by head into a ``(3 C, C)`` matrix, the layout that
MXNet's ``interleaved_matmul_selfatt_qk`` / ``_valatt`` operators read without any transpose.

The block takes one of three paths, chosen at construction:

* MXNet's operators: scores, ``softmax`` of scores plus the additive mask, dropout, context;
* ``kernels``: scores, softmax, dropout and context in one operator of gluonbert's CPU kernels
  (:mod:`gluonbert.kernels`), which skips the padding keys;
* ``kernels`` and ``inference``: the forward-only kernel, which also skips the padding queries
  and writes no dropout mask (no gradient: such a block cannot be trained).

The kernels need a ``valid_length`` and heads at most 256 wide; without them the block uses
MXNet's operators.
"""
from mxnet.gluon import HybridBlock

from .dropout import Dropout, training_flag, use_kernels

__all__ = ['SelfAttention']

#: The widest head the attention kernels take.
MAX_KERNEL_HEAD = 256


class SelfAttention(HybridBlock):
    """Scaled dot-product self-attention over ``H`` heads, masking keys past ``valid_length``.

    Parameters
    ----------
    units : int
        Model width C (input and output).
    num_heads : int
        Number of heads H; the head width is C / H.
    dropout : float
        Dropout on the attention weights.
    kernels : bool
        Run on gluonbert's CPU kernels (CPU contexts only).
    inference : bool
        With ``kernels``: the forward-only kernel (no dropout, no gradient).
    return_weights : bool
        Whether anyone reads the attention weights (the forward-only kernel then writes them;
        otherwise it returns a placeholder).

    Inputs
    ------
    x : (T, B, C)
        Hidden states, time-major.
    valid_length : (B * H,) or None
        Number of real (non-padding) tokens of each sequence, repeated for each head.
        Keys at positions >= valid_length get zero attention weight. MXNet's operators use
        ``attention_bias`` instead when it is given; the CPU kernel uses ``valid_length``.
        No masking when both are None.
    attention_bias : (B * H, T, T) or None
        Added to the attention scores before the softmax: 0 for keys to attend to, a large
        negative number (-1e18) for masked keys (see
        :func:`gluonbert.model.encoder.attention_bias`). Faster than ``valid_length`` for
        MXNet's operators (its softmax with ``length`` is a scalar loop), and the encoder
        builds the bias once for all its cells.
    training : (1,) or None
        :func:`~gluonbert.model.dropout.training_flag`, for the training kernel.

    Outputs
    -------
    context : (T, B, C)
        Attention-weighted values, heads concatenated (not yet through the output projection).
        The inference kernel leaves the rows of padding queries at 0 (no real position reads
        them).
    weights : (B, H, T, T)
        Attention weights (query, key) of every head; with the inference kernel, 0 in the rows
        of padding queries, and a (B, H, 1, 1) placeholder without ``return_weights``.
    """

    def __init__(self, units, num_heads, dropout=0.0, kernels=False, inference=False,
                 return_weights=True, weight_initializer=None, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self._units = units
        self._num_heads = num_heads
        with self.name_scope():
            for name in ('query', 'key', 'value'):
                setattr(self, f'{name}_weight', self.params.get(
                    f'{name}_weight', shape=(units, units), init=weight_initializer,
                    allow_deferred_init=True))
                setattr(self, f'{name}_bias', self.params.get(
                    f'{name}_bias', shape=(units,), init='zeros', allow_deferred_init=True))
            self.dropout = Dropout(dropout)
        kernels = units // num_heads <= MAX_KERNEL_HEAD and use_kernels(kernels)
        self._path = ('inference kernel' if kernels and inference else
                      'kernel' if kernels else 'mxnet')
        self._return_weights = return_weights

    def _collect_params_with_prefix(self, prefix=''):
        # Checkpoint names are those of three Dense layers: proj_query.weight, proj_query.bias,
        # ... (GluonNLP and TF BERT), although the block holds the raw matrices to fuse them.
        if prefix:
            prefix += '.'
        names = {}
        for attr, param in self._reg_params.items():
            which, kind = attr.split('_')
            names[f'{prefix}proj_{which}.{kind}'] = param
        for name, child in self._children.items():
            names.update(child._collect_params_with_prefix(prefix + name))
        return names

    def hybrid_forward(self, F, x, valid_length=None, attention_bias=None, training=None, *,
                       query_weight, key_weight, value_weight, query_bias, key_bias, value_bias):
        heads = self._num_heads
        # (C, C) x 3 -> (H, 3, C/H, C) -> (3C, C): rows interleaved [q_h, k_h, v_h] per head.
        weights = [F.expand_dims(F.reshape(w, shape=(-4, heads, -1, 0)), axis=1)
                   for w in (query_weight, key_weight, value_weight)]
        qkv_weight = F.reshape(F.concat(*weights, dim=1), shape=(-1, self._units))
        biases = [F.reshape(b, shape=(heads, 1, -1)) for b in (query_bias, key_bias, value_bias)]
        qkv_bias = F.reshape(F.concat(*biases, dim=1), shape=(-1,))
        qkv = F.FullyConnected(x, qkv_weight, qkv_bias, num_hidden=3 * self._units,
                               flatten=False)                                   # (T, B, 3C)
        path = self._path if valid_length is not None else 'mxnet'
        if path == 'inference kernel':
            # Forward only: the context of the real queries; the weights when they are read,
            # a (B*H, 1, 1) placeholder otherwise (see gluonbert.kernels).
            context, weights = F.gluonbert_self_attention_inference(
                qkv, F.cast(valid_length, dtype='float32'), heads=heads,
                weights=int(self._return_weights))
        elif path == 'kernel':
            # One CPU kernel for scores, softmax, dropout and context (identities: see
            # gluonbert.model.layer_norm.LayerNorm).
            if training is None:
                training = training_flag(F, qkv)
            context, weights, _ = F.gluonbert_self_attention(
                F.identity(qkv), F.identity(F.cast(valid_length, dtype='float32')), training,
                heads=heads, p=self.dropout._rate)
        else:
            scores = F.contrib.interleaved_matmul_selfatt_qk(qkv, heads=heads)  # (B*H, T, T)
            if attention_bias is not None:
                weights = F.softmax(F.elemwise_add(scores, attention_bias), axis=-1)
            elif valid_length is not None:
                lengths = F.broadcast_like(F.reshape(valid_length, shape=(-1, 1)), scores,
                                           lhs_axes=(1,), rhs_axes=(1,))        # (B*H, T)
                weights = F.softmax(scores, length=lengths, use_length=True, axis=-1)
            else:
                weights = F.softmax(scores, axis=-1)
            context = F.contrib.interleaved_matmul_selfatt_valatt(
                qkv, self.dropout(weights), heads=heads)                        # (T, B, C)
        return context, F.reshape(weights, shape=(-4, -1, heads, 0, 0))
