"""PyTorch side: the GEMM ceiling and HuggingFace transformers' BERT, eager or torch.compile.

Models are HF's own classes with random weights: ``BertForSequenceClassification`` (training),
``BertModel`` (inference: sequence + pooled output) and ``BertForPreTraining``, whose MLM head
is applied only to the gathered masked positions (as gluonbert, GluonNLP and d2l do; HF's own
``forward`` would project every position onto the vocabulary). The optimizer is
``torch.optim.AdamW(fused=True)``, HF Trainer's default on torch >= 2.8. Attention is HF's
default implementation (``sdpa``).

``hf-bf16`` is ``hf-eager`` with the forward pass (and the loss) under
``torch.autocast('cpu', dtype=torch.bfloat16)``, what an HF user with AVX-512 BF16 or AMX
reaches for: weights, gradients and Adam stay float32, matrix products run in bfloat16.
"""
import contextlib
import statistics
import time

import torch
from torch import nn

from . import flops as F
from .inputs import bucketed_batches, classifier_batch, pretrain_batch
from .measure import current_rss_mb, make_result, reset_peak_rss, time_steps

__all__ = ['run_gemm', 'run_model_workload']


def run_gemm(workload):
    rows = []
    for n in workload.gemm_sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        times, warm = time_steps(lambda: torch.matmul(a, b), workload.warmup, workload.repeat)
        rows.append(make_result(workload, 'torch', times, 0, 0, F.gemm(n),
                                variant=f'torch.matmul {n}', warmup_seconds=warm))
    return rows


def _config(shape, dropout=None):
    from transformers import BertConfig
    dropout = shape.dropout if dropout is None else dropout
    return BertConfig(vocab_size=shape.vocab_size, hidden_size=shape.units,
                      num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                      intermediate_size=shape.hidden_size, max_position_embeddings=shape.max_length,
                      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      type_vocab_size=2, num_labels=2,
                      # set now: HF sets it on the first call, and torch.compile would then
                      # recompile on the second
                      problem_type='single_label_classification')


def _tensors(batch):
    return {'input_ids': torch.from_numpy(batch.token_ids).long(),
            'token_type_ids': torch.from_numpy(batch.segment_ids).long(),
            'attention_mask': torch.from_numpy(batch.attention_mask)}


class GatheredPretraining(nn.Module):
    """``BertForPreTraining`` with the MLM head applied to gathered positions only.

    Inputs
    ------
    input_ids, token_type_ids, attention_mask : (B, T)
    masked_positions, masked_ids : (B, P) int64
    masked_weights : (B, P) float
    nsp_labels : (B,) int64

    Outputs
    -------
    loss : scalar
        Weighted mean MLM cross-entropy + mean NSP cross-entropy.
    """

    def __init__(self, config):
        super().__init__()
        from transformers import BertForPreTraining
        self.model = BertForPreTraining(config)

    def forward(self, input_ids, token_type_ids, attention_mask, masked_positions, masked_ids,
                masked_weights, nsp_labels):
        out = self.model.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                              attention_mask=attention_mask)
        sequence, pooled = out.last_hidden_state, out.pooler_output
        rows = torch.arange(sequence.shape[0]).unsqueeze(1)
        picked = sequence[rows, masked_positions]                               # (B, P, C)
        mlm = self.model.cls.predictions(picked)                                # (B, P, V)
        nsp = self.model.cls.seq_relationship(pooled)
        token_loss = nn.functional.cross_entropy(mlm.flatten(0, 1), masked_ids.flatten(),
                                                 reduction='none')
        weights = masked_weights.flatten()
        return ((token_loss * weights).sum() / weights.sum()
                + nn.functional.cross_entropy(nsp, nsp_labels))


def _optimizer(model, lr):
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def autocast(impl):
    """``torch.autocast('cpu', dtype=torch.bfloat16)`` for ``hf-bf16``, else a no-op context."""
    if impl == 'hf-bf16':
        return torch.autocast('cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_step(model, optimizer, kwargs, impl):
    def step():
        with autocast(impl):
            out = model(**kwargs)
        loss = out if isinstance(out, torch.Tensor) else out.loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def run_model_workload(workload, impl, context):
    """Times one workload with HF's BERT; ``impl`` is ``hf-eager``, ``hf-compile`` or
    ``hf-bf16``."""
    from transformers import BertForSequenceClassification, BertModel
    torch.manual_seed(0)
    compiled = impl == 'hf-compile'
    backend = context.get('compile_backend', 'inductor')
    model_shape = workload.model
    b, t = workload.batch_size, workload.seq_len
    start = time.perf_counter()

    def maybe_compile(module):
        return torch.compile(module, backend=backend) if compiled else module

    if workload.kind == 'infer':
        model = BertModel(_config(model_shape, dropout=0.0)).eval()
        runner = maybe_compile(model)
        kwargs = _tensors(classifier_batch(model_shape, b, t))

        def step():
            with torch.inference_mode(), autocast(impl):
                out = runner(**kwargs)
            return out.last_hidden_state, out.pooler_output
        flops, items, tokens = F.classifier_forward(model_shape, b, t, num_classes=0), b, b * t
    elif workload.kind in ('train', 'finetune'):
        model = BertForSequenceClassification(_config(model_shape)).train()
        runner = maybe_compile(model)
        optimizer = _optimizer(model, 2e-5)
        if workload.kind == 'train':
            batch = classifier_batch(model_shape, b, t)
            step = _train_step(runner, optimizer, dict(
                _tensors(batch), labels=torch.from_numpy(batch.labels).long()), impl)
            flops = F.TRAIN_FACTOR * F.classifier_forward(model_shape, b, t)
            items, tokens = b, b * t
        else:
            shapes = bucketed_batches(context['mrpc_lengths'], b, context['num_batches'],
                                      max_length=t)
            steps = []
            for i, (padded, valid) in enumerate(shapes):
                batch = classifier_batch(model_shape, b, padded, valid, seed=i)
                steps.append(_train_step(runner, optimizer, dict(
                    _tensors(batch), labels=torch.from_numpy(batch.labels).long()), impl))

            def step():
                for one in steps:
                    one()
            flops = sum(F.TRAIN_FACTOR * F.classifier_forward(model_shape, b, padded)
                        for padded, _ in shapes)
            items = b * len(shapes)
            tokens = sum(b * padded for padded, _ in shapes)
            real = sum(sum(valid) for _, valid in shapes)
    elif workload.kind == 'pretrain':
        model = GatheredPretraining(_config(model_shape)).train()
        runner = maybe_compile(model)
        optimizer = _optimizer(model, 1e-3)
        batch = pretrain_batch(model_shape, b, t, workload.num_masked)
        kwargs = dict(_tensors(batch),
                      masked_positions=torch.from_numpy(batch.masked_positions).long(),
                      masked_ids=torch.from_numpy(batch.masked_ids).long(),
                      masked_weights=torch.from_numpy(batch.masked_weights),
                      nsp_labels=torch.from_numpy(batch.labels).long())
        step = _train_step(runner, optimizer, kwargs, impl)
        flops = F.TRAIN_FACTOR * F.pretrain_forward(model_shape, b, t, workload.num_masked)
        items, tokens = b, b * t
    else:
        raise ValueError(f'unknown workload kind {workload.kind!r}')
    setup = time.perf_counter() - start
    rss = current_rss_mb()
    setup_peak = reset_peak_rss()
    times, warm = time_steps(step, workload.warmup, workload.repeat)
    extra = {'attn_implementation': model.config._attn_implementation
             if hasattr(model, 'config') else model.model.config._attn_implementation}
    if compiled:
        extra['compile_backend'] = backend
    if impl == 'hf-bf16':
        extra['autocast_dtype'] = 'bfloat16'
    if workload.kind == 'finetune':
        extra.update({'padded_lengths': [p for p, _ in shapes], 'real_tokens_per_rep': real,
                      'real_tokens_per_s_median': real / statistics.median(times),
                      'length_source': context['length_source']})
    note = f'torch {torch.__version__}, {torch.get_num_threads()} threads'
    if compiled:
        note += f', torch.compile(backend={backend!r}), warm-up includes compilation'
    if impl == 'hf-bf16':
        note += ', eager, torch.autocast(cpu, bfloat16)'
    return [make_result(workload, impl, times, items, tokens, flops, setup_seconds=setup,
                        warmup_seconds=warm, rss_before_mb=rss, setup_peak_mb=setup_peak, note=note,
                        **extra)]
