"""Model FLOPs of each workload: the same count for every implementation.

Only matrix products are counted (a multiply-add is 2 FLOPs); embeddings, LayerNorm, softmax,
GELU, dropout and the optimizer are not. With L layers, width C, feed-forward width F, H heads,
vocabulary V, and for a batch of B sequences padded to length T (``n = B * T`` tokens):

* encoder, per layer: ``2 n (4 C^2 + 2 C F)`` (fused QKV 3 C^2, output projection C^2, FFN 2 C F)
  plus attention ``4 B T^2 C`` (``Q K^T`` and ``A V``, each ``2 B T^2 C``);
* pooler ``2 B C^2``; sentence classifier ``2 B C K``; next-sentence head ``2 B C 2``;
* masked-LM head on P gathered positions: ``2 B P (C^2 + C V)``;
* training = 3 x forward (backward computes the data and the weight gradient of each product).

Effective GFLOP/s = these FLOPs / measured seconds; it measures the model's useful work, so an
implementation that computes more than needed (e.g. the MLM head at every position) does not
score higher.
"""

__all__ = ['encoder_forward', 'classifier_forward', 'pretrain_forward', 'gemm', 'TRAIN_FACTOR']

#: backward ~= 2 x forward for matrix products.
TRAIN_FACTOR = 3


def encoder_forward(model, batch, length):
    """Forward FLOPs of the embedding + L-layer encoder on a (B, T) batch."""
    tokens = batch * length
    c, f = model.units, model.hidden_size
    dense = 2 * tokens * (4 * c * c + 2 * c * f)
    attention = 4 * batch * length * length * c
    return model.num_layers * (dense + attention)


def classifier_forward(model, batch, length, num_classes=2, pooler=True):
    """Encoder + pooler (+ a K-way classifier when ``num_classes``) forward FLOPs."""
    flops = encoder_forward(model, batch, length)
    if pooler:
        flops += 2 * batch * model.units * model.units
    if num_classes:
        flops += 2 * batch * model.units * num_classes
    return flops


def pretrain_forward(model, batch, length, num_masked):
    """Encoder + pooler + NSP + MLM (on ``num_masked`` positions per sequence) forward FLOPs."""
    c = model.units
    flops = classifier_forward(model, batch, length, num_classes=2)
    flops += 2 * batch * num_masked * (c * c + c * model.vocab_size)
    return flops


def gemm(n):
    """FLOPs of an (n, n) x (n, n) product."""
    return 2 * n ** 3
