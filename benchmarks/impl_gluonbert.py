"""gluonbert rows of ``train_base``, ``pretrain_d2l``, ``finetune_mrpc`` and ``infer_base``:
the code the ``gluonbert`` CLI runs, on the same NumPy batches as the references.

* Configuration: the ``gluonbert finetune`` / ``gluonbert pretrain`` argument parsers
  (:mod:`gluonbert.cli.arguments`) with their defaults, plus the workload's sizes
  (``--max-seq-length``, ``--batch-size``, ``--dropout``...): optimiser ``bertadam``,
  ``--max-grad-norm`` 1.0, warm-up 0.1, seed, one CPU context, kvstore ``device``.
* Model: :meth:`FinetuningTask.build <gluonbert.train.finetune.FinetuningTask.build>` (a
  ``BERTClassifier`` on the encoder of a ``--from-converted`` directory holding random
  weights of the workload's shape, data ``data/paraphrase_sample``) and
  :meth:`PretrainingTask.build <gluonbert.train.pretrain.PretrainingTask.build>` (a shard
  holding the workload's batch, ``--config`` a JSON of its shape): what the tasks build and
  how they hybridize it.
* Step: what :func:`gluonbert.train.engine.train` does for one update: the task's
  ``counts`` summed by :meth:`Cluster.sum_over_workers`, the engine's
  :func:`~gluonbert.train.engine.make_trainer` and
  :class:`~gluonbert.train.loop.ShardedStep` (``forward_backward`` with the task's loss and
  its ``totals``, then ``update``: all-reduce, global-norm clipping, Adam), the statistics
  into :class:`~gluonbert.train.metrics.DeviceSums`, the warm-up/linear schedule's rate and
  the per-update reseeding; then ``mx.nd.waitall()`` (the repetition ends when the new
  weights exist). The data pipeline is not timed here (nor for the references):
  ``finetune_minilm_mrpc`` times it.
* Inference: :func:`gluonbert.serve.predict.load_classifier` on a fine-tuned directory
  (random weights) and :func:`~gluonbert.serve.predict.predict_proba`, the functions
  ``gluonbert predict`` runs the model with (length-sorted batches, batchify,
  ``split_and_load``, forward, softmax, copy to the host).
"""
import os
import statistics
import tempfile
import time

import mxnet as mx
import numpy as np

from . import flops as F
from .cli_workloads import _write_converted, _write_finetuned, write_tiny_vocab
from .inputs import bucketed_batches, classifier_batch, pretrain_batch
from .measure import make_result, time_mxnet_steps

__all__ = ['run_model_workload']


def _finetune_config(workload, tmp):
    """``gluonbert finetune --from-converted DIR`` with the CLI's defaults and the workload's
    sizes; the converted directory holds random weights of the workload's shape."""
    from gluonbert.cli import build_parser
    from gluonbert.cli.arguments import finetune_config
    shape = workload.model
    vocab = os.path.join(tmp, 'vocab.txt')
    write_tiny_vocab(vocab, shape.vocab_size)
    converted = _write_converted(os.path.join(tmp, 'converted'), shape, vocab)
    args = build_parser().parse_args([
        'finetune', '--from-converted', converted, '--out-dir', os.path.join(tmp, 'run'),
        '--max-seq-length', str(workload.seq_len), '--batch-size', str(workload.batch_size),
        '--dropout', str(shape.dropout), '--no-progress'])
    return finetune_config(args)


def _pretrain_config(workload, batch, tmp):
    """``gluonbert pretrain --data SHARDS --config MODEL.json`` with the CLI's defaults; the
    one shard holds ``batch`` (so the task's data checks see the very ids timed)."""
    import json

    from gluonbert.cli import build_parser
    from gluonbert.data.shards import write_shard
    from gluonbert.cli.arguments import pretrain_config

    from .cli_workloads import _bert_config
    shards = os.path.join(tmp, 'shards')
    os.makedirs(shards)
    write_shard(os.path.join(shards, 'part-00000.npz'), dict(zip(_SHARD_FIELDS, batch)))
    model_json = os.path.join(tmp, 'model.json')
    with open(model_json, 'w', encoding='utf-8') as f:
        json.dump(_bert_config(workload.model).to_dict(), f)
    args = build_parser().parse_args([
        'pretrain', '--data', shards, '--config', model_json, '--out-dir',
        os.path.join(tmp, 'run'), '--batch-size', str(workload.batch_size),
        '--max-seq-length', str(workload.seq_len), '--max-predictions-per-seq',
        str(workload.num_masked), '--dropout', str(workload.model.dropout), '--no-progress'])
    return pretrain_config(args)


_SHARD_FIELDS = ('input_ids', 'segment_ids', 'valid_length', 'masked_positions', 'masked_ids',
                 'masked_weights', 'nsp_label')


def _pretraining_arrays(model, b, t, p):
    """The workload's MLM+NSP batch in the order of :class:`gluonbert.data.PretrainingBatch`."""
    from gluonbert.data import PretrainingBatch
    x = pretrain_batch(model, b, t, p)
    return PretrainingBatch(x.token_ids, x.segment_ids, x.valid_length, x.masked_positions,
                            x.masked_ids, x.masked_weights, x.labels)


class EngineSteps:
    """The engine's update (:func:`gluonbert.train.engine.train`, step 5) on fixed batches.

    Parameters
    ----------
    task : Task
        A built :class:`FinetuningTask` or :class:`PretrainingTask`.
    net : gluon.HybridBlock
        What ``task.build`` returned.
    config : RunConfig
        The task's configuration (optimiser, devices, seed).
    run : engine._Run
        Contexts and cluster, as the engine made them.
    batches : list of tuples of NumPy arrays
        One update each (``accumulate`` = 1, the CLI's default).
    total_steps : int
        Length of the learning-rate schedule.
    """

    def __init__(self, task, net, config, run, batches, total_steps):
        from gluonbert.train.engine import make_trainer
        from gluonbert.train.loop import ShardedStep
        from gluonbert.train.metrics import DeviceSums
        from gluonbert.train.optim import WarmupLinearSchedule
        self.task, self.config, self.cluster = task, config, run.cluster
        self.batches = batches
        self.trainer = make_trainer(net, config.optimizer, run.cluster)
        self.step = ShardedStep(net.collect_params(), self.trainer, run.contexts,
                                lambda *shard_and_totals: task.loss(net, *shard_and_totals),
                                config.optimizer.max_grad_norm, config.optimizer.accumulate)
        self.sums = DeviceSums(task.stats, run.contexts)
        self.schedule = WarmupLinearSchedule(config.optimizer.lr, total_steps,
                                             config.optimizer.warmup_ratio)
        run.cluster.sync_weights(self.trainer)
        self.done = 0
        self.lrs, self.norms = [], []

    def __call__(self):
        from gluonbert.train.checkpoint import reseed_mxnet
        for batch in self.batches:
            local = np.sum([self.task.counts(batch)], axis=0)
            totals = self.cluster.sum_over_workers([*local, 0.0])   # + the stop flag
            for device, values in self.step.forward_backward(batch, totals[:-1]):
                self.sums.add(device, values)
            lr = self.schedule(self.done)
            norm = self.step.update(lr)
            self.done += 1
            reseed_mxnet(self.config.seed, self.done)
            self.lrs.append(lr)
            self.norms.append(norm)
        mx.nd.waitall()

    def evidence(self):
        """What only the engine's step produces: the task's metrics over every update, the
        gradient norms before clipping, the schedule's rates, the optimiser."""
        norms = [float(n.asnumpy()[0]) for n in self.norms if n is not None]
        return {'engine_metrics': self.task.metrics(self.sums.read()),
                'grad_norms': [round(n, 6) for n in norms],
                'learning_rates': self.lrs, 'updates': self.done,
                'optimizer': type(self.trainer._optimizer).__name__,
                'max_grad_norm': self.config.optimizer.max_grad_norm}


def _engine_run(config, task_name):
    """Seeds, contexts, cluster and run directory as :func:`gluonbert.train.engine.train`
    makes them."""
    from gluonbert.dist.cluster import make_cluster, parse_devices
    from gluonbert.train.engine import RunDirectory, _Run, seed_everything
    seed_everything(config.seed)
    contexts = parse_devices(config.devices.gpus, config.devices.cpus)
    cluster = make_cluster(contexts, config.devices.kvstore, config.devices.comm_backend)
    directory = RunDirectory(config, task_name, cluster.is_main)
    directory.claim()
    return _Run(config, contexts, cluster, directory=directory)


def _train_batches(workload, context):
    """(batches, items, padded tokens, FLOPs, extra) of a ``train`` or ``finetune``
    repetition, the references' batches."""
    model, b, t = workload.model, workload.batch_size, workload.seq_len
    if workload.kind == 'train':
        x = classifier_batch(model, b, t)
        batches = [(x.token_ids, x.segment_ids, x.valid_length, x.labels)]
        return batches, b, b * t, F.TRAIN_FACTOR * F.classifier_forward(model, b, t), {}
    shapes = bucketed_batches(context['mrpc_lengths'], b, context['num_batches'], max_length=t)
    batches = []
    for i, (padded, valid) in enumerate(shapes):
        x = classifier_batch(model, b, padded, valid, seed=i)
        batches.append((x.token_ids, x.segment_ids, x.valid_length, x.labels))
    flops = sum(F.TRAIN_FACTOR * F.classifier_forward(model, b, padded) for padded, _ in shapes)
    real = sum(sum(valid) for _, valid in shapes)
    extra = {'padded_lengths': [p for p, _ in shapes], 'real_tokens_per_rep': real,
             'length_source': context['length_source']}
    return batches, b * len(shapes), sum(b * p for p, _ in shapes), flops, extra


def run_model_workload(workload, impl, context):
    """Builds what the CLI builds and times the workload (one result row)."""
    from gluonbert.train.finetune import FinetuningTask
    from gluonbert.train.pretrain import PretrainingTask
    model, b, t = workload.model, workload.batch_size, workload.seq_len
    steps = workload.warmup + workload.repeat
    extra = {}
    with tempfile.TemporaryDirectory(prefix='gluonbert-bench-') as tmp:
        start = time.perf_counter()
        if workload.kind in ('train', 'finetune'):
            batches, items, tokens, flops, extra = _train_batches(workload, context)
            config = _finetune_config(workload, tmp)
            task = FinetuningTask(config)
            run = _engine_run(config, task.name)
            net = task.build(run)
            step = EngineSteps(task, net, config, run, batches, steps * len(batches))
            note = ('FinetuningTask.build, engine.make_trainer, ShardedStep.forward_backward '
                    '(classification_loss) + update (clip, BERTAdamW), CLI defaults')
        elif workload.kind == 'pretrain':
            batch = _pretraining_arrays(model, b, t, workload.num_masked)
            config = _pretrain_config(workload, batch, tmp)
            task = PretrainingTask(config)
            run = _engine_run(config, task.name)
            net = task.build(run)
            step = EngineSteps(task, net, config, run, [batch], steps)
            flops = F.TRAIN_FACTOR * F.pretrain_forward(model, b, t, workload.num_masked)
            items, tokens = b, b * t
            note = ('PretrainingTask.build, engine.make_trainer, ShardedStep.forward_backward '
                    '(pretraining_loss) + update (clip, BERTAdamW), CLI defaults')
        elif workload.kind == 'infer':
            from gluonbert.serve.predict import load_classifier, predict_proba
            x = classifier_batch(model, b, t)
            samples = list(zip(x.token_ids, x.segment_ids, x.valid_length))
            vocab = os.path.join(tmp, 'vocab.txt')
            write_tiny_vocab(vocab, model.vocab_size)
            model_dir = _write_finetuned(os.path.join(tmp, 'model'), model, vocab, t)
            contexts = [mx.cpu()]
            net, transform, _ = load_classifier(model_dir, contexts)
            probs = []

            def step():
                probs[:] = [predict_proba(net, samples, b, contexts, transform.pad_id)]
            # the same FLOP count as the references' encoder + pooler (the 2-way head and
            # the softmax are negligible)
            flops, items, tokens = F.classifier_forward(model, b, t, num_classes=0), b, b * t
            note = ('train.predict.load_classifier + predict_proba (what gluonbert predict '
                    'runs): classifier probabilities, copied to the host')
        else:
            raise ValueError(f'unknown workload kind {workload.kind!r}')
        setup, rss, setup_peak, times, warm = time_mxnet_steps(step, workload, start)
        if workload.kind == 'infer':
            extra = {'probabilities_shape': list(probs[0].shape),
                     'probability_sum_error': float(np.abs(probs[0].sum(axis=1) - 1).max()),
                     'net': type(net).__name__}
        else:
            extra.update(step.evidence())
            if 'real_tokens_per_rep' in extra:
                extra['real_tokens_per_s_median'] = (extra['real_tokens_per_rep']
                                                     / statistics.median(times))
    return [make_result(workload, impl, times, items, tokens, flops, setup_seconds=setup,
                        warmup_seconds=warm, rss_before_mb=rss, setup_peak_mb=setup_peak,
                        note=note, **extra)]
