"""Fine-tuning BERTClassifier on sentence-pair classification (MRPC and GLUE-format tasks).

Same machinery as pretraining: bucketed batches split over devices, one recording scope,
all-reduce, global-norm clipping, accumulation, warm-up then linear decay. After each epoch the
dev set is scored (accuracy, F1 of class 1); the best epoch's parameters are kept in
``out_dir/model.params`` (with ``finetune.json`` and ``vocab.txt``: what ``gluonbert predict``
needs), ``--early-stop N`` ends the run after N epochs without a better dev accuracy. A run is
deterministic for a seed.
"""
import dataclasses
import json
import math
import os
import random
import time

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..data.fileio import atomic_write
from ..model import BERTClassifier
from .backbone import check_source, load_backbone
from .devices import make_cluster, parse_devices
from .loop import ShardedStep
from .losses import CLASSIFY_STATS, classification_loss
from .metrics import DeviceSums, accuracy, f1_score
from .optim import WarmupLinearSchedule, create_optimizer, exclude_from_weight_decay
from .plot import plot_curves
from .predict import predict_proba
from .pretrain import setup_amp
from .progress import TrainProgress
from .tasks import load_task, task_spec

__all__ = ['finetune', 'evaluate']


def evaluate(net, samples, batch_size, contexts, pad_id):
    """Dev metrics of labelled transformed samples.

    Outputs
    -------
    dict
        ``accuracy``, ``f1`` (class 1 positive), ``loss`` (mean cross-entropy), ``count``.
    """
    probs = predict_proba(net, samples, batch_size, contexts, pad_id)
    labels = np.array([int(s[3][0]) for s in samples])
    predicted = probs.argmax(axis=1)
    loss = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())
    return {'accuracy': accuracy(predicted, labels), 'f1': f1_score(predicted, labels),
            'loss': loss, 'count': len(labels)}


def _build(config, spec, contexts):
    backbone = load_backbone(config)
    net = BERTClassifier(backbone.bert, num_classes=len(spec.labels), dropout=config.dropout)
    net.classifier.initialize(ctx=mx.cpu())
    net.collect_params().reset_ctx(contexts)
    net.hybridize(static_alloc=True)
    return net, backbone


def _write_model(out, net, backbone, spec, config, record):
    """The best model so far: parameters, then the files ``predict`` reads with them."""
    from ..data import write_hf_vocab_txt
    net.save_parameters(os.path.join(out, 'model.params'))
    write_hf_vocab_txt(backbone.vocab, os.path.join(out, 'vocab.txt'))
    info = {'bert': net.bert.config.to_dict(), 'task': dataclasses.asdict(spec),
            'lower': backbone.lower, 'max_seq_length': config.max_seq_length,
            'dropout': config.dropout, 'source': backbone.source, 'best': record}
    with atomic_write(os.path.join(out, 'finetune.json'), newline='\n') as f:
        json.dump(info, f, indent=2)


def _update(step, schedule, updates, progress):
    step.update(schedule(updates))
    progress.advance()
    return updates + 1


def finetune(config):
    """Fine-tunes a classifier; see the module docstring.

    Parameters
    ----------
    config : FinetuneConfig

    Outputs
    -------
    dict
        ``epochs`` (per-epoch dev metrics, train loss/accuracy, seconds, sequences/s),
        ``best`` (the kept epoch), ``split``, ``source``, ``out_dir``.
    """
    from ..data import BERTDatasetTransform, classification_dataloader, get_tokenizer
    check_source(config)
    random.seed(config.seed)
    np.random.seed(config.seed)
    mx.random.seed(config.seed, ctx='all')
    contexts = parse_devices(config.devices.gpus, config.devices.cpus)
    use_amp = setup_amp(contexts, config.devices.dtype)
    cluster = make_cluster(contexts, config.devices.kvstore)
    spec = task_spec(config)
    train_records, dev_records, split = load_task(config, spec)
    net, backbone = _build(config, spec, contexts)
    transform = BERTDatasetTransform(get_tokenizer(backbone.vocab, lower=backbone.lower),
                                     config.max_seq_length, class_labels=spec.labels, pad=False,
                                     pair=spec.pair)
    train = [transform(r.example()) for r in train_records]
    dev = [transform(r.example()) for r in dev_records]
    loader = classification_dataloader(train, config.batch_size, shuffle=True,
                                       pad_id=transform.pad_id, as_numpy=True)
    accumulate = config.optimizer.accumulate
    total = config.epochs * math.ceil(len(loader) / accumulate)
    exclude_from_weight_decay(net)
    trainer = gluon.Trainer(net.collect_params(), create_optimizer(config.optimizer),
                            kvstore=cluster.kvstore, update_on_kvstore=False)
    if use_amp:
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    step = ShardedStep(net.collect_params(), trainer, contexts,
                       lambda *a, **k: classification_loss(net, *a, **k),
                       config.optimizer.max_grad_norm, accumulate, use_amp)
    schedule = WarmupLinearSchedule(config.optimizer.lr, total, config.optimizer.warmup_ratio)
    sums = DeviceSums(CLASSIFY_STATS, contexts)
    out = config.out_dir
    os.makedirs(out, exist_ok=True)
    progress = TrainProgress(os.path.join(out, 'train.log'), total, desc='finetune',
                             enabled=cluster.is_main, bar=config.progress)
    progress.message(f'finetune {backbone.source} on {contexts}: {split}; '
                     f'{len(train)} train / {len(dev)} dev, batch {config.batch_size} x '
                     f'{accumulate}, {total} updates')
    updates, history, epochs, best, stale = 0, [], [], None, 0
    for epoch in range(1, config.epochs + 1):
        tick, seen, skipped = time.time(), 0, 0
        epoch_sums = np.zeros(len(CLASSIFY_STATS))
        for batch in loader:
            if len(batch[0]) < len(contexts):   # a bucket's last, tiny batch
                skipped += len(batch[0])
                continue
            for device, values in step.forward_backward(batch, num_sentences=len(batch[0])):
                sums.add(device, values)
            seen += len(batch[0])
            if step.pending == accumulate:
                updates = _update(step, schedule, updates, progress)
                if updates % config.log_interval == 0:
                    totals = sums.read()
                    epoch_sums += [totals[k] for k in CLASSIFY_STATS]
                    record = {'step': updates, 'epoch': epoch, 'lr': schedule(updates - 1),
                              'loss': totals['loss_sum'] / max(totals['count'], 1),
                              'accuracy': totals['correct'] / max(totals['count'], 1)}
                    history.append(record)
                    progress.log(record, console=False)
        if step.pending:                        # an epoch's last, partial accumulation
            updates = _update(step, schedule, updates, progress)
        totals = sums.read()
        epoch_sums += [totals[k] for k in CLASSIFY_STATS]
        seconds = time.time() - tick
        metrics = evaluate(net, dev, config.eval_batch_size, contexts, transform.pad_id)
        record = {'epoch': epoch, 'dev_accuracy': metrics['accuracy'], 'dev_f1': metrics['f1'],
                  'dev_loss': metrics['loss'],
                  'train_loss': epoch_sums[0] / max(epoch_sums[2], 1),
                  'train_accuracy': epoch_sums[1] / max(epoch_sums[2], 1),
                  'seconds': seconds, 'sequences_per_s': seen / max(seconds, 1e-9),
                  'skipped': skipped}
        epochs.append(record)
        progress.message(f'epoch {epoch}: dev accuracy {metrics["accuracy"]:.4f} F1 '
                         f'{metrics["f1"]:.4f} (dev loss {metrics["loss"]:.4f}; train loss '
                         f'{record["train_loss"]:.4f} acc {record["train_accuracy"]:.4f}; '
                         f'{seconds:.1f} s, {record["sequences_per_s"]:.1f} seq/s)')
        if best is None or metrics['accuracy'] > best['dev_accuracy']:
            best, stale = record, 0
            if cluster.is_main:
                _write_model(out, net, backbone, spec, config, record)
        else:
            stale += 1
            if config.early_stop and stale >= config.early_stop:
                progress.message(f'early stop: {stale} epochs without a better dev accuracy')
                break
    progress.close()
    net.load_parameters(os.path.join(out, 'model.params'), ctx=contexts)
    summary = {'epochs': epochs, 'best': best, 'split': split, 'source': backbone.source,
               'out_dir': out, 'train_size': len(train), 'dev_size': len(dev)}
    if cluster.is_main:
        plot_curves(history, os.path.join(out, 'loss_curve.png'), ('loss', 'accuracy'),
                    title='fine-tuning (train, per log interval)')
        with atomic_write(os.path.join(out, 'metrics.json'), newline='\n') as f:
            json.dump(summary, f, indent=2)
    summary['net'] = net
    return summary
