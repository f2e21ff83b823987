"""Per-shard losses of pretraining (MLM + NSP) and classification.

Each function runs the model on one device's shard and returns ``(loss, stats)``:
``loss`` is normalised by *global* batch quantities passed in by the caller, so summing the
shards' losses (and gradients) gives exactly the un-split batch's; ``stats`` is a small vector
of sums that :class:`~gluonbert.train.metrics.DeviceSums` accumulates on the device.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

__all__ = ['PRETRAIN_STATS', 'CLASSIFY_STATS', 'PretrainingSums', 'pretraining_loss',
           'pretraining_counts', 'classification_loss', 'classification_counts',
           'cross_entropy']

#: Names of the sums returned by :func:`pretraining_loss`.
PRETRAIN_STATS = ('mlm_loss_sum', 'mlm_correct', 'mlm_weight', 'nsp_loss_sum', 'nsp_correct',
                  'nsp_count')
#: Names of the sums returned by :func:`classification_loss`.
CLASSIFY_STATS = ('loss_sum', 'correct', 'count')


def cross_entropy(scores, labels):
    """Softmax cross-entropy per row and whether the arg-max is right.

    Inputs
    ------
    scores : (..., K) float
    labels : (...) int

    Outputs
    -------
    loss : (...) float
    correct : (...) float (1.0 or 0.0)
    """
    labels = labels.astype('float32', copy=False)
    loss = -mx.nd.pick(mx.nd.log_softmax(scores, axis=-1), labels, axis=-1)
    correct = (mx.nd.argmax(scores, axis=-1) == labels).astype('float32')
    return loss, correct


class PretrainingSums(HybridBlock):
    """Weighted MLM and NSP cross-entropy sums and their statistics, as one cached graph.

    Hybridized with static memory: the (b, P, V) gradient reuses the same buffers every step
    instead of being allocated (and, for a large vocabulary, page-faulted in) anew. With
    ``kernel`` (CPU) the MLM cross-entropy is gluonbert's ``gluonbert_softmax_ce``
    (:mod:`gluonbert.kernels`), which keeps no (b, P, V) log-probabilities for the
    backward pass and whose row maxima give the accuracy statistic, so no ``argmax`` makes a
    second pass over the (b, P, V) scores (``benchmarks/README.md``, "The pretraining step");
    otherwise ``log_softmax``, ``pick`` and ``argmax``.

    Parameters
    ----------
    kernel : bool

    Inputs
    ------
    nsp_scores : (b, 2)
    mlm_scores : (b, P, V)
    masked_ids : (b, P) int
    masked_weights : (b, P)
    nsp_label : (b,) int

    Outputs
    -------
    mlm_sum : (1,)
        ``sum(masked_weights * ce_mlm)``.
    nsp_sum : (1,)
        ``sum(ce_nsp)``.
    stats : (6,)
        Sums named by :data:`PRETRAIN_STATS` (no gradient).
    """

    def __init__(self, kernel=False):
        super().__init__()
        self._kernel = kernel

    def hybrid_forward(self, F, nsp_scores, mlm_scores, masked_ids, masked_weights, nsp_label):
        ids = F.cast(masked_ids, 'float32')
        labels = F.cast(nsp_label, 'float32')
        weights = F.cast(masked_weights, 'float32')
        if self._kernel:
            # No identity before the kernel (unlike LayerNorm's parameters): the scores are
            # the model's output, never a parameter with grad_req='add', and copying the
            # (b, P, V) scores and their gradient costs more than the cross-entropy itself.
            mlm_ce, _, mlm_top = F.gluonbert_softmax_ce(mlm_scores, ids)             # (b, P)
        else:
            mlm_ce = -F.pick(F.log_softmax(mlm_scores, axis=-1), ids, axis=-1)      # (b, P)
            mlm_top = F.argmax(mlm_scores, axis=-1)
        nsp_ce = -F.pick(F.log_softmax(nsp_scores, axis=-1), labels, axis=-1)       # (b,)
        mlm_sum = F.reshape(F.sum(mlm_ce * weights), shape=(1,))
        nsp_sum = F.reshape(F.sum(nsp_ce), shape=(1,))
        mlm_hit = F.broadcast_equal(mlm_top, ids)
        nsp_hit = F.broadcast_equal(F.argmax(nsp_scores, axis=-1), labels)
        sums = [mlm_sum, F.sum(mlm_hit * weights), F.sum(weights), nsp_sum, F.sum(nsp_hit),
                F.sum(F.ones_like(nsp_ce))]
        stats = F.BlockGrad(F.concat(*[F.reshape(x, shape=(1,)) for x in sums], dim=0))
        return mlm_sum, nsp_sum, stats


_PRETRAINING_SUMS = {}


def _pretraining_sums(ctx):
    """The hybridized :class:`PretrainingSums` for scores on ``ctx`` (kernel on CPU)."""
    from .. import kernels as cpu_kernels
    kernel = ctx.device_type == 'cpu' and cpu_kernels.available()
    if kernel not in _PRETRAINING_SUMS:
        _PRETRAINING_SUMS[kernel] = PretrainingSums(kernel)
        _PRETRAINING_SUMS[kernel].hybridize(static_alloc=True)
    return _PRETRAINING_SUMS[kernel]


def pretraining_loss(model, input_ids, segment_ids, valid_length, masked_positions, masked_ids,
                     masked_weights, nsp_label, totals):
    """Masked-LM plus next-sentence loss of one shard.

    ``loss = sum(w * ce_mlm) / totals[0] + sum(ce_nsp) / totals[1]``, where both denominators
    are computed over the whole update (every micro-batch, device and worker).

    Parameters
    ----------
    model : BERTModel
        With the MLM and NSP heads.
    input_ids, segment_ids : (b, T) int32
    valid_length : (b,) int32
    masked_positions, masked_ids : (b, P) int32
    masked_weights : (b, P) float32
        1 for real predictions, 0 for padding.
    nsp_label : (b,) int32
        0 IsNext, 1 NotNext.
    totals : (2,) array
        Sum of ``masked_weights`` and number of sentence pairs over the whole update
        (:func:`pretraining_counts` summed over micro-batches and workers).

    Outputs
    -------
    loss : (1,) NDArray
    stats : (6,) NDArray
        Sums named by :data:`PRETRAIN_STATS` (weighted MLM loss, weighted MLM hits, weight
        total, NSP loss, NSP hits, sentence count).
    """
    outputs = model(input_ids, segment_ids, valid_length, masked_positions)
    nsp_scores, mlm_scores = outputs[-2], outputs[-1]
    mlm_sum, nsp_sum, stats = _pretraining_sums(mlm_scores.context)(
        nsp_scores, mlm_scores, masked_ids, masked_weights, nsp_label)
    loss = mlm_sum / max(float(totals[0]), 1.0) + nsp_sum / max(float(totals[1]), 1.0)
    return loss, stats


def pretraining_counts(batch):
    """``(sum of masked_weights, sentence pairs)`` of a :class:`PretrainingBatch` (host)."""
    return [float(batch.masked_weights.sum()), float(len(batch.nsp_label))]


def classification_counts(batch):
    """``(sentences,)`` of a classification batch ``(input_ids, segment_ids, valid_length,
    label)`` (host)."""
    return [float(len(batch[0]))]


def classification_loss(model, input_ids, segment_ids, valid_length, label, totals):
    """Mean (over the whole update) softmax cross-entropy of a classifier on one shard.

    Parameters
    ----------
    model : BERTClassifier
    input_ids, segment_ids : (b, T) int32
    valid_length : (b,) int32
    label : (b,) int32
    totals : (1,) array
        Number of sentences of the whole update (:func:`classification_counts` summed over
        micro-batches and workers).

    Outputs
    -------
    loss : (1,) NDArray
    stats : (3,) NDArray
        Sums named by :data:`CLASSIFY_STATS`.
    """
    scores = model(input_ids, segment_ids, valid_length)
    ce, hit = cross_entropy(scores, label)
    total = mx.nd.sum(ce)
    with mx.autograd.pause():
        stats = mx.nd.stack(total, mx.nd.sum(hit), mx.nd.sum(mx.nd.ones_like(ce))).reshape((-1,))
    return (total / float(totals[0])).reshape((1,)), stats
