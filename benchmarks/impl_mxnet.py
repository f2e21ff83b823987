"""MXNet side: the GEMM ceiling, and GluonNLP 0.10's training and inference loops (the model
and optimizer of :mod:`benchmarks.impl_gluonnlp`; gluonbert's rows run the CLI's code, in
:mod:`benchmarks.impl_gluonbert`).

Every step ends with ``mx.nd.waitall()``: MXNet runs asynchronously, and a step is timed until
its results (and the updated weights) exist.
"""
import statistics
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from . import flops as F
from .inputs import bucketed_batches, classifier_batch, pretrain_batch
from .measure import make_result, time_mxnet_steps, time_steps

__all__ = ['run_gemm', 'run_model_workload']


def run_gemm(workload):
    """``mx.nd.dot`` (OpenBLAS) and ``FullyConnected`` (oneDNN, what BERT's dense layers run)."""
    rows = []
    for n in workload.gemm_sizes:
        a = mx.nd.random.normal(shape=(n, n))
        b = mx.nd.random.normal(shape=(n, n))
        cases = {
            'mx.nd.dot': lambda: mx.nd.dot(a, b).wait_to_read(),
            'FullyConnected': lambda: mx.nd.FullyConnected(
                a, b, no_bias=True, num_hidden=n).wait_to_read(),
        }
        for name, step in cases.items():
            times, warm = time_steps(step, workload.warmup, workload.repeat)
            rows.append(make_result(workload, 'mxnet', times, 0, 0, F.gemm(n),
                                    variant=f'{name} {n}', warmup_seconds=warm))
    return rows


def _nd(array, dtype=None):
    return mx.nd.array(array, dtype=dtype or array.dtype)


class _ClassifierStep:
    """One fwd+bwd+optimizer step of a sentence-pair classifier on fixed NDArrays."""

    def __init__(self, net, trainer, batch, length_dtype):
        self.net, self.trainer = net, trainer
        self.inputs = [_nd(batch.token_ids), _nd(batch.segment_ids),
                       _nd(batch.valid_length, length_dtype)]
        self.labels = _nd(batch.labels, 'float32')
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.loss.hybridize(static_alloc=True, static_shape=True)

    def __call__(self):
        with autograd.record():
            loss = self.loss(self.net(*self.inputs), self.labels).mean()
        loss.backward()
        self.trainer.step(1)
        mx.nd.waitall()


class _PretrainStep:
    """One MLM (gathered positions, weighted) + NSP step."""

    def __init__(self, net, trainer, batch, length_dtype):
        self.net, self.trainer = net, trainer
        self.inputs = [_nd(batch.token_ids), _nd(batch.segment_ids),
                       _nd(batch.valid_length, length_dtype), _nd(batch.masked_positions)]
        self.masked_ids = _nd(batch.masked_ids, 'float32')                       # (B, P)
        self.weights = _nd(batch.masked_weights[:, :, None])                      # (B, P, 1)
        self.nsp_labels = _nd(batch.labels, 'float32')
        self.mlm_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        self.nsp_loss = gluon.loss.SoftmaxCrossEntropyLoss()
        for loss in (self.mlm_loss, self.nsp_loss):
            loss.hybridize(static_alloc=True, static_shape=True)
        self.mlm_scale = batch.masked_weights.shape[1] / float(batch.masked_weights.sum())

    def __call__(self):
        with autograd.record():
            _, _, nsp_scores, mlm_scores = self.net(*self.inputs)                # (B, P, V)
            # (B, P, V) as is: an imperative reshape would copy the (B*P, V) gradient back.
            # The loss block averages over P: times P / sum(weights) = weighted mean over
            # the real predictions.
            mlm = self.mlm_loss(mlm_scores, self.masked_ids, self.weights)       # (B,)
            loss = (mlm.sum() * self.mlm_scale
                    + self.nsp_loss(nsp_scores, self.nsp_labels).mean())
        loss.backward()
        self.trainer.step(1)
        mx.nd.waitall()


class _InferStep:
    def __init__(self, net, batch, length_dtype):
        self.net = net
        self.inputs = [_nd(batch.token_ids), _nd(batch.segment_ids),
                       _nd(batch.valid_length, length_dtype)]

    def __call__(self):
        outputs = self.net(*self.inputs)
        for out in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
            out.wait_to_read()


def run_model_workload(workload, impl, context):
    """Builds GluonNLP's model (:mod:`benchmarks.impl_gluonnlp`) and times the workload.

    Parameters
    ----------
    workload : benchmarks.spec.Workload
    impl : str
        ``gluonnlp`` or ``gluonnlp-malloc`` (the same code; the process differs).
    context : dict
        Extra worker inputs (``mrpc_lengths``).

    Outputs
    -------
    list of dict (one result row)
    """
    from . import impl_gluonnlp as builder
    model = workload.model
    mx.random.seed(0)
    np.random.seed(0)
    start = time.perf_counter()
    b, t = workload.batch_size, workload.seq_len
    dtype = builder.VALID_LENGTH_DTYPE
    if workload.kind == 'infer':
        batch = classifier_batch(model, b, t)
        net = builder.encoder(model)
        step = _InferStep(net, batch, dtype)
        builder.prepare(net, step.inputs, training=False)
        flops, items, tokens = F.classifier_forward(model, b, t, num_classes=0), b, b * t
    elif workload.kind == 'train':
        batch = classifier_batch(model, b, t)
        net = builder.classifier(model)
        step = _ClassifierStep(net, builder.trainer(net, 2e-5), batch, dtype)
        builder.prepare(net, step.inputs, training=True)
        flops = F.TRAIN_FACTOR * F.classifier_forward(model, b, t)
        items, tokens = b, b * t
    elif workload.kind == 'pretrain':
        batch = pretrain_batch(model, b, t, workload.num_masked)
        net = builder.pretrainer(model)
        step = _PretrainStep(net, builder.trainer(net, 1e-3), batch, dtype)
        builder.prepare(net, step.inputs, training=True)
        flops = F.TRAIN_FACTOR * F.pretrain_forward(model, b, t, workload.num_masked)
        items, tokens = b, b * t
    elif workload.kind == 'finetune':
        shapes = bucketed_batches(context['mrpc_lengths'], b, context['num_batches'],
                                  max_length=t)
        net = builder.classifier(model)
        trainer = builder.trainer(net, 2e-5)
        steps = [_ClassifierStep(net, trainer, classifier_batch(model, b, padded, valid, seed=i),
                                 dtype)
                 for i, (padded, valid) in enumerate(shapes)]
        builder.prepare(net, steps[0].inputs, training=True)

        def step():
            for one in steps:
                one()
        flops = sum(F.TRAIN_FACTOR * F.classifier_forward(model, b, padded)
                    for padded, _ in shapes)
        items = b * len(shapes)
        tokens = sum(b * padded for padded, _ in shapes)
        real = sum(sum(valid) for _, valid in shapes)
    else:
        raise ValueError(f'unknown workload kind {workload.kind!r}')
    setup, rss, setup_peak, times, warm = time_mxnet_steps(step, workload, start)
    extra = {}
    if workload.kind == 'finetune':
        extra = {'padded_lengths': [p for p, _ in shapes], 'real_tokens_per_rep': real,
                 'real_tokens_per_s_median': real / statistics.median(times),
                 'length_source': context['length_source']}
    return [make_result(workload, impl, times, items, tokens, flops, setup_seconds=setup,
                        warmup_seconds=warm, rss_before_mb=rss, setup_peak_mb=setup_peak,
                        note=getattr(builder, 'NOTE', ''), **extra)]
