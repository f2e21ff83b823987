"""Per-shard losses of pretraining (MLM + NSP) and classification.

Each function runs the model on one device's shard and returns ``(loss, stats)``:
``loss`` is normalised by *global* batch quantities passed in by the caller, so summing the
shards' losses (and gradients) gives exactly the un-split batch's; ``stats`` is a small vector
of sums that :class:`~gluonbert.train.metrics.DeviceSums` accumulates on the device.
"""
import mxnet as mx

__all__ = ['PRETRAIN_STATS', 'CLASSIFY_STATS', 'pretraining_loss', 'classification_loss',
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


def pretraining_loss(model, input_ids, segment_ids, valid_length, masked_positions, masked_ids,
                     masked_weights, nsp_label, mlm_denominator, num_sentences):
    """Masked-LM plus next-sentence loss of one shard.

    ``loss = sum(w * ce_mlm) / mlm_denominator + sum(ce_nsp) / num_sentences``, where both
    denominators are computed over the whole (un-split) batch.

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
    mlm_denominator : float
        Sum of ``masked_weights`` over the global batch.
    num_sentences : int
        Global batch size B.

    Outputs
    -------
    loss : (1,) NDArray
    stats : (6,) NDArray
        Sums named by :data:`PRETRAIN_STATS` (weighted MLM loss, weighted MLM hits, weight
        total, NSP loss, NSP hits, sentence count).
    """
    outputs = model(input_ids, segment_ids, valid_length, masked_positions)
    nsp_scores, mlm_scores = outputs[-2], outputs[-1]
    mlm_ce, mlm_hit = cross_entropy(mlm_scores, masked_ids)                    # (b, P)
    nsp_ce, nsp_hit = cross_entropy(nsp_scores, nsp_label)                     # (b,)
    weights = masked_weights.astype('float32', copy=False)
    mlm_sum = mx.nd.sum(mlm_ce * weights)
    nsp_sum = mx.nd.sum(nsp_ce)
    loss = mlm_sum / float(mlm_denominator) + nsp_sum / float(num_sentences)
    with mx.autograd.pause():
        stats = mx.nd.stack(mlm_sum, mx.nd.sum(mlm_hit * weights), mx.nd.sum(weights),
                            nsp_sum, mx.nd.sum(nsp_hit),
                            mx.nd.sum(mx.nd.ones_like(nsp_ce))).reshape((-1,))
    return loss.reshape((1,)), stats


def classification_loss(model, input_ids, segment_ids, valid_length, label, num_sentences):
    """Mean (over the global batch) softmax cross-entropy of a classifier on one shard.

    Parameters
    ----------
    model : BERTClassifier
    input_ids, segment_ids : (b, T) int32
    valid_length : (b,) int32
    label : (b,) int32
    num_sentences : int
        Global batch size B.

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
    return (total / float(num_sentences)).reshape((1,)), stats
