"""Heads on top of the encoder: the pooler, next-sentence and masked-LM predictions."""
from mxnet.gluon import HybridBlock, nn

from ..errors import InputError
from .init import TruncNorm
from .inputs import check_masked_positions, checked_scope, needs_check, refuse_numpy_mode
from .layer_norm import LayerNorm

__all__ = ['BERTPooler', 'NSClassifier', 'MLMDecoder']


class BERTPooler(nn.Dense):
    """``tanh(W h_0 + b)``: the sequence summary from the first (``[CLS]``) token.

    A ``Dense`` layer (checkpoint names ``weight``, ``bias``) applied to position 0.

    Parameters
    ----------
    units : int
        Model width C.

    Inputs
    ------
    sequence : (B, T, C)

    Outputs
    -------
    pooled : (B, C)
    """

    def __init__(self, units, prefix=None, params=None):
        refuse_numpy_mode('BERTPooler')
        super().__init__(units, activation='tanh', flatten=False, in_units=units,
                         weight_initializer=TruncNorm(0.02), prefix=prefix, params=params)

    def hybrid_forward(self, F, sequence, weight, bias=None):
        first = F.reshape(F.slice_axis(sequence, axis=1, begin=0, end=1), shape=(0, -1))
        return super().hybrid_forward(F, first, weight, bias)


class NSClassifier(HybridBlock):
    """Next-sentence prediction: the tanh pooler on the first token, then a 2-way Dense.

    Class 0 means "sentence B follows sentence A" (IsNext), 1 means "B is random" (NotNext),
    as in Google's BERT and GluonNLP.

    Parameters
    ----------
    units : int
        Model width C.

    Inputs
    ------
    sequence : (B, T, C)

    Outputs
    -------
    In :class:`~gluonbert.model.BERTModel`'s order:

    pooled : (B, C)
        The pooled ``[CLS]`` vector (reused for sentence classification).
    scores : (B, 2)
        Unnormalised logits of IsNext / NotNext.
    """

    def __init__(self, units, prefix=None, params=None):
        refuse_numpy_mode('NSClassifier')
        super().__init__(prefix=prefix, params=params)
        with self.name_scope():
            self.pooler = BERTPooler(units, prefix='pooler_')
            self.classifier = nn.Dense(2, flatten=False, in_units=units,
                                       weight_initializer=TruncNorm(0.02), prefix='cls_')

    def hybrid_forward(self, F, sequence):
        pooled = self.pooler(sequence)
        return pooled, self.classifier(pooled)


class MLMDecoder(nn.HybridSequential):
    """Masked-LM head: picks the masked positions, then Dense-GELU-LayerNorm-Dense(vocab).

    The vectors at ``masked_positions`` are gathered with one ``gather_nd`` whose batch index
    is built inside the block, so only ``B * P`` vectors (not ``B * T``) reach the vocabulary
    projection. That projection's weight is the word-embedding table itself (weight tying;
    with ``tie=False`` a (V, C) weight of its own); its bias is separate. Children are
    numbered 0-3 (1 is the parameter-free GELU): the checkpoint names ``decoder.0.*``,
    ``decoder.2.*``, ``decoder.3.*`` of GluonNLP.

    Parameters
    ----------
    units : int
        Model width C.
    vocab_size : int
        Output vocabulary V.
    word_embedding : gluon.nn.Embedding
        The encoder's (V, C) word embedding, whose weight the output layer shares.
    layer_norm_eps : float
        LayerNorm epsilon.
    tie : bool
        Share the output weight with ``word_embedding`` (BERT's default).
    kernels : bool
        Its LayerNorm on gluonbert's CPU kernels.

    Inputs
    ------
    sequence : (B, T, C)
        Encoder output.
    masked_positions : (B, P) int
        Positions to predict in each sequence, each in ``[0, T)``; padding entries may point
        at any valid position (their loss weight is zero).

    Outputs
    -------
    scores : (B, P, V)
        Unnormalised vocabulary logits at each masked position.
    """

    def __init__(self, units, vocab_size, word_embedding, layer_norm_eps=1e-12, tie=True,
                 kernels=False, prefix=None, params=None):
        refuse_numpy_mode('MLMDecoder')
        super().__init__(prefix=prefix, params=params)
        if word_embedding.weight.shape != (vocab_size, units):
            raise InputError(f'MLMDecoder: word embedding has shape {word_embedding.weight.shape};'
                             f' expected ({vocab_size}, {units}) to tie the output layer')
        with self.name_scope():
            self.add(nn.Dense(units, flatten=False, in_units=units,
                              weight_initializer=TruncNorm(0.02)))
            self.add(nn.GELU())
            self.add(LayerNorm(layer_norm_eps, units, kernels))
            if tie:
                # params=... makes this Dense look up its weight in the embedding's
                # dictionary: the same Parameter object, so gradients of both uses add up.
                self.add(nn.Dense(vocab_size, flatten=False, in_units=units,
                                  params=word_embedding.collect_params()))
            else:
                self.add(nn.Dense(vocab_size, flatten=False, in_units=units,
                                  weight_initializer=TruncNorm(0.02)))
        if (self[3].weight is word_embedding.weight) != tie:
            raise RuntimeError(f'MLMDecoder: output weight tied to the word embedding is '
                               f'{not tie}; expected {tie}')

    def forward(self, sequence, masked_positions):
        if needs_check(masked_positions):
            check_masked_positions(sequence.shape, masked_positions)
        with checked_scope():
            return HybridBlock.forward(self, sequence, masked_positions)

    def hybrid_forward(self, F, sequence, masked_positions):
        positions = F.cast(masked_positions, dtype='int32')
        batch = F.broadcast_like(F.reshape(F.contrib.arange_like(positions, axis=0),
                                           shape=(-1, 1)), positions)           # (B, P)
        picked = F.gather_nd(sequence, F.stack(batch, positions, axis=0))       # (B, P, C)
        for block in self._children.values():
            picked = block(picked)
        return picked
