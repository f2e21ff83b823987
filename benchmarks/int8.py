"""fp32 vs INT8 serving throughput of a BERT classifier on MRPC-length pairs, side by side.

A classifier of the given configuration (default ``bert_6_384_12``, MiniLM-L6-H384's shape)
with random weights is saved as a fine-tuned model directory, exported as fp32 and quantized
to INT8 (``gluonbert.serve.deploy``, calibration on the MRPC file) and the three directories are
timed through the path ``gluonbert predict`` runs (:func:`gluonbert.serve.predict.
predict_proba`: length-sorted batches, batchify, forward, softmax) on the first ``--pairs``
pairs of the real MRPC training file. Speed does not depend on the weights; accuracy does:
with ``--finetuned DIR`` (a model fine-tuned on MRPC's seeded split) that model is used
instead, timed on the dev pairs of the split, and scored on them (accuracy, F1), fp32 and
INT8 side by side (calibration: the first training pairs of the split).

``--hf`` adds HuggingFace's ``BertForSequenceClassification`` of the same shape (random
weights; speed only) on the same batches: eager fp32, ``torch.compile`` fp32, PyTorch's
dynamic int8 (``quantize_dynamic`` on the Linear layers) and bf16 autocast.

``--tensor-wise`` also times an INT8 model quantized with one weight scale per matrix
(``gluonbert quantize --tensor-wise``) beside the default one. The INT8 models get the weights
``gluonbert quantize`` gives this CPU: 8-bit (channel-wise by default) with VNNI, 7-bit
tensor-wise without (docs/deploy.md); the JSON says which (``int8_weights``).

``--max-batch-tokens N`` also times the fp32 and INT8 models with ``predict``'s token-budget
batching (at most N padded tokens per batch, rows unlimited) beside the batches of
``--batch-size``, in the same interleaved repeats.

``--infer-base`` measures instead the ``infer_base`` workload's INT8 column: ``bert_12_768_12``
(random weights, 2-way classifier), batches of 32 sequences of 128 tokens, fp32 (the
classifier and its export) and INT8 (``gluonbert.serve.deploy.quantize``) through the same
``predict_proba`` path, as effective GFLOP/s (matrix products only, ``benchmarks/flops.py``;
and the products actually run: every ``BERTClassifier`` graph skips the last layer's
projection and feed-forward layers outside [CLS], ``BERTEncoder.cls_rows_only``) beside the
GEMM ceilings measured in the same run: one fp32 ``FullyConnected`` and one INT8
(``quantize_net_v2``, oneDNN) ``FullyConnected`` of ``--gemm-size`` cubed, all taking turns.
It needs no data file (the vocabulary and the texts are synthetic words).

The vocabulary is made of MRPC's own words (lower-cased, punctuation split), so a pair's
token count is its word count: about 10-15% shorter than with BERT's WordPiece vocabulary,
in which rare words are split.

Usage::

    python benchmarks/int8.py                           # MiniLM shape, 1024 pairs, batch 32
    python benchmarks/int8.py --model bert_tiny_test --pairs 128 --out /tmp/int8.json
    python benchmarks/int8.py --finetuned runs/minilm-mrpc       # real weights, dev accuracy
    python benchmarks/int8.py --max-batch-tokens 2048            # + token-budget batching
    python benchmarks/int8.py --infer-base --out runs/benchmarks/int8_infer_base.json

Without ``../shared/data/mrpc/msr_paraphrase_train.txt`` (or ``--mrpc``) it prints why and
exits 0. Results: a table on stdout, JSON (default ``runs/benchmarks/int8.json``) with the CPU
model and ISA flags.
"""
import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from gluonbert.platform import amx_status  # noqa: E402

DEFAULT_MRPC = os.path.join(ROOT, '..', 'shared', 'data', 'mrpc', 'msr_paraphrase_train.txt')


def mrpc_vocab(path, records):
    """Writes specials + every lower-cased word and punctuation mark of ``records``."""
    words = set()
    for r in records:
        for text in (r.text_a, r.text_b):
            words.update(re.findall(r'\w+|[^\w\s]', text.lower()))
    tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + sorted(words)
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens) + '\n')
    return len(tokens)


def random_classifier_dir(directory, model, vocab_size, max_seq_length):
    """A fine-tuned-format directory (model.params, finetune.json; vocab.txt already there)
    holding a randomly initialised classifier (inputs cut to ``max_seq_length`` or the
    configuration's position table)."""
    import mxnet as mx

    from gluonbert.model import BERTClassifier, BERTModel, get_config
    from gluonbert.model.init import TruncNorm
    config = get_config(model, vocab_size=vocab_size)
    mx.random.seed(0)
    bert = BERTModel(config, use_pooler=True, use_decoder=False, use_classifier=False)
    net = BERTClassifier(bert, num_classes=2, dropout=0.0)
    net.initialize(TruncNorm(0.02))
    net(mx.nd.ones((1, 4), dtype='int32'), mx.nd.zeros((1, 4), dtype='int32'))
    net.save_parameters(os.path.join(directory, 'model.params'))
    info = {'bert': config.to_dict(), 'task': {'labels': ['0', '1'], 'text_a': None,
                                               'text_b': None, 'label_column': None},
            'lower': True, 'max_seq_length': min(max_seq_length, config.max_length),
            'dropout': 0.0}
    with open(os.path.join(directory, 'finetune.json'), 'w', encoding='utf-8') as f:
        json.dump(info, f)


def hf_runners(config, samples, batch_size, pad_id):
    """HuggingFace ``BertForSequenceClassification`` of the same shape (random weights: speed
    only) as an HF user on this CPU would run it: eager fp32, ``torch.compile`` fp32,
    ``quantize_dynamic`` int8 Linear layers, and bf16 autocast; each a function of no
    arguments that classifies ``samples`` in predict's length-sorted batches."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from gluonbert.data import ClassificationBatchify
    from gluonbert.serve.predict import batches_by_length
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=config['vocab_size'], hidden_size=config['units'],
        num_hidden_layers=config['num_layers'], num_attention_heads=config['num_heads'],
        intermediate_size=config['hidden_size'], max_position_embeddings=config['max_length'],
        type_vocab_size=2, num_labels=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)).eval()
    batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
    batches = []
    for index in batches_by_length(samples, batch_size):
        ids, types, lengths = batchify([samples[i][:3] for i in index])[:3]
        mask = (np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64)
        batches.append((index, torch.from_numpy(ids.astype(np.int64)),
                        torch.from_numpy(types.astype(np.int64)), torch.from_numpy(mask)))

    def runner(module, bf16=False):
        def run():
            out = np.zeros((len(samples), 2), dtype=np.float32)
            with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16,
                                                        enabled=bf16):
                for index, ids, types, mask in batches:
                    logits = module(input_ids=ids, token_type_ids=types,
                                    attention_mask=mask).logits
                    out[index] = torch.softmax(logits.float(), dim=-1).numpy()
            return out
        return run
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return {'hf_eager_fp32': runner(model),
            'hf_compile_fp32': runner(torch.compile(model, dynamic=True)),
            'hf_dynamic_int8': runner(int8), 'hf_bf16_autocast': runner(model, bf16=True)}


def time_models(directories, samples, batch_size, repeats, extra=None, max_batch_tokens=None,
                budget_models=()):
    """Pairs per second of predict's batching and forward pass for each directory (best and
    median of repeats after one warm-up pass; the models take turns within each repeat, so
    that other jobs on the machine slow them alike), and their probabilities. ``extra``:
    more runners (name -> function of no arguments returning the probabilities). With
    ``max_batch_tokens``, the directories named in ``budget_models`` are also run with that
    token budget (and no row limit), as ``<name>_tokens<N>``."""
    import mxnet as mx

    from gluonbert.serve.predict import load_classifier, predict_proba
    runners = {}
    for name, directory in directories.items():
        net, transform, _ = load_classifier(directory, [mx.cpu()])
        runners[name] = (lambda net=net, pad=transform.pad_id:
                         predict_proba(net, samples, batch_size, [mx.cpu()], pad))
        if max_batch_tokens and name in budget_models:
            runners[f'{name}_tokens{max_batch_tokens}'] = (
                lambda net=net, pad=transform.pad_id:
                predict_proba(net, samples, None, [mx.cpu()], pad, max_batch_tokens))
    runners.update(extra or {})
    probs = {name: run() for name, run in runners.items()}          # warm-up (and compile)
    seconds = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    results = {name: {'pairs_per_s_best': len(samples) / min(s),
                      'pairs_per_s_median': len(samples) / statistics.median(s), 'seconds': s}
               for name, s in seconds.items()}
    return results, probs


def padding_stats(samples, batch_size, max_batch_tokens=None):
    """Batches and padded tokens of predict's batching (real tokens: ``sum(lengths)``)."""
    from gluonbert.serve.predict import batches_by_length
    batches = batches_by_length(samples, batch_size, max_batch_tokens)
    padded = sum(len(b) * max(len(samples[i][0]) for i in b) for b in batches)
    return {'batches': len(batches), 'padded_tokens': int(padded),
            'real_tokens': int(sum(len(s[0]) for s in samples)),
            'rows_mean': len(samples) / max(len(batches), 1)}


def profile_ops(directories, samples, batch_size):
    """Milliseconds per operator of one ``predict_proba`` pass of each directory (MXNet's
    profiler, aggregate statistics, after a warm-up pass): where the time goes in the fp32
    and the INT8 graphs. Outputs ``{name: {op: [ms, calls]}}``, largest first."""
    import mxnet as mx

    from gluonbert.serve.predict import load_classifier, predict_proba
    out = {}
    for name, directory in directories.items():
        net, transform, _ = load_classifier(directory, [mx.cpu()])
        predict_proba(net, samples, batch_size, [mx.cpu()], transform.pad_id)
        mx.nd.waitall()
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=os.path.join(tempfile.gettempdir(),
                                                     f'int8-profile-{os.getpid()}.json'))
        mx.profiler.set_state('run')
        predict_proba(net, samples, batch_size, [mx.cpu()], transform.pad_id)
        mx.nd.waitall()
        mx.profiler.set_state('stop')
        stats = json.loads(mx.profiler.dumps(reset=True, format='json'))['Time']['operator']
        ops = {op: [v['Total'], v['Count']] for op, v in stats.items()
               if v['Total'] >= 0.05 and op not in ('WaitForVar', 'DeleteVariable')}
        out[name] = dict(sorted(ops.items(), key=lambda kv: -kv[1][0]))
    return out


def gemm_runners(n, count=10):
    """One fp32 and one INT8 ``FullyConnected`` of (n, n) x (n, n), each a function of no
    arguments running ``count`` products (a window not much shorter than the model's, so
    that other jobs' noise is alike): the INT8 one is a Dense layer quantized as
    ``gluonbert.serve.deploy.quantize`` quantizes the model's layers (``quantize_net_v2``, smart
    mode, channel-wise weight scales, naive calibration on its input; the same oneDNN kernel
    runs 7-bit tensor-wise weights)."""
    import warnings

    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    def dense():
        net = mx.gluon.nn.HybridSequential()
        net.add(mx.gluon.nn.Dense(n, in_units=n, flatten=False))
        net.initialize(mx.init.Normal(0.02))
        net.hybridize(static_alloc=True, static_shape=True)
        return net
    mx.random.seed(0)
    x = mx.nd.random.normal(shape=(n, n))
    fp32 = dense()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        int8 = quantize_net_v2(dense(), quantized_dtype='auto', quantize_mode='smart',
                               quantize_granularity='channel-wise',
                               calib_data=mx.io.NDArrayIter(x, batch_size=n),
                               calib_mode='naive', num_calib_examples=n, ctx=mx.cpu())
    int8.hybridize(static_alloc=True, static_shape=True)
    def run(net):
        for _ in range(count):
            net(x).wait_to_read()
    return {'gemm_fp32': lambda: run(fp32), 'gemm_int8': lambda: run(int8)}


def weights_of(quantized):
    """'7-bit tensor-wise' etc.: the weights of a ``deploy.quantize`` result."""
    return f'{quantized["weight_bits"]}-bit {quantized["granularity"]}'


def print_profile(profile, top=12):
    for name, ops in (profile or {}).items():
        total = sum(ms for ms, _ in ops.values())
        print(f'profile {name}: {total:.1f} ms in operators; ' + ', '.join(
            f'{op} {ms:.1f} ms x{calls}' for op, (ms, calls) in list(ops.items())[:top]))


def infer_base(args):
    """The ``infer_base`` INT8 column: GFLOP/s of fp32 and INT8 ``bert_12_768_12`` inference
    at (B, T) = (32, 128) through ``predict_proba``, beside the fp32 and INT8 GEMM ceilings,
    all taking turns in each repeat (module docstring)."""
    import mxnet as mx
    import numpy as np

    from benchmarks import flops
    from gluonbert.serve import deploy
    from gluonbert.model import get_config
    from gluonbert.serve.predict import load_classifier
    length, batch = args.base_length, args.batch_size
    load_start = os.getloadavg()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tuned = os.path.join(tmp, 'tuned')
        os.makedirs(tuned)
        words = [f'w{i}' for i in range(args.base_vocab - 5)]    # one token each
        with open(os.path.join(tuned, 'vocab.txt'), 'w', encoding='utf-8') as f:
            f.write('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + words) + '\n')
        random_classifier_dir(tuned, args.base_model, args.base_vocab, length)

        def pairs(count):        # long enough that every pair is cut to `length` tokens
            return [(' '.join(rng.choice(words, size=length)),
                     ' '.join(rng.choice(words, size=length))) for _ in range(count)]
        calib = os.path.join(tmp, 'calib.tsv')
        with open(calib, 'w', encoding='utf-8') as f:
            f.write('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n')
            for i, (a, b) in enumerate(pairs(args.calib_batches * batch)):
                f.write(f'{i % 2}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}\n')
        _, transform, _ = load_classifier(tuned, [mx.cpu()])
        samples = [transform(p) for p in pairs(args.base_batches * batch)]
        assert all(len(s[0]) == length for s in samples)
        deploy.export(tuned, os.path.join(tmp, 'fp32'))
        start = time.perf_counter()
        quantized = deploy.quantize(tuned, calib, os.path.join(tmp, 'int8'),
                                    calib_mode=args.calib_mode,
                                    num_calib_batches=args.calib_batches, batch_size=batch)
        calib_seconds = time.perf_counter() - start
        gemms = gemm_runners(args.gemm_size, args.gemm_count)
        results, probs = time_models(
            {'gluonbert_fp32': tuned, 'exported_fp32': os.path.join(tmp, 'fp32'),
             'int8': os.path.join(tmp, 'int8')}, samples, batch, args.repeats, gemms)
        with open(os.path.join(tmp, 'int8', 'model-symbol.json'), encoding='utf-8') as f:
            fused = sorted({n['op'] for n in json.load(f)['nodes']
                            if n['op'].startswith('_sg_mkldnn_')})
        profile = profile_ops({'exported_fp32': os.path.join(tmp, 'fp32'),
                               'int8': os.path.join(tmp, 'int8')},
                              samples, batch) if args.profile else None
    config = get_config(args.base_model, vocab_size=args.base_vocab)
    model_flops = flops.classifier_forward(config, batch, length) * args.base_batches
    # every classifier graph runs the last layer's projection and feed-forward on [CLS]
    # alone: the products skipped on the other T - 1 positions
    skipped = (2 * batch * (length - 1) * (config.units ** 2 + 2 * config.units *
                                           config.hidden_size) * args.base_batches)
    gemm_flops = flops.gemm(args.gemm_size) * args.gemm_count
    for name, r in results.items():
        work = gemm_flops if name.startswith('gemm_') else model_flops
        r['gflops_best'] = work / min(r['seconds']) / 1e9
        r['gflops_median'] = work / statistics.median(r['seconds']) / 1e9
        del r['pairs_per_s_best'], r['pairs_per_s_median']
        if not name.startswith('gemm_'):
            r['seq_per_s_best'] = len(samples) / min(r['seconds'])
            r['flops_executed'] = model_flops - skipped
            r['gflops_executed_best'] = r['flops_executed'] / min(r['seconds']) / 1e9
    ceilings = {'fp32': results['gemm_fp32']['gflops_best'],
                'int8': results['gemm_int8']['gflops_best']}
    for name, r in results.items():
        if not name.startswith('gemm_'):
            # what the kernels reached: the products actually run, against their ceiling
            r['fraction_of_ceiling'] = r['gflops_executed_best'] / ceilings[
                'int8' if name == 'int8' else 'fp32']
    report = {
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'workload': 'infer_base', 'model': args.base_model, 'weights': 'random (TruncNorm 0.02)',
        'batch_size': batch, 'length': length, 'batches_per_pass': args.base_batches,
        'flops_per_pass': model_flops, 'gemm_size': args.gemm_size,
        'gemm_count': args.gemm_count, 'ceilings': ceilings,
        'int8_vs_fp32': results['int8']['gflops_best'] / results['gluonbert_fp32']['gflops_best'],
        'int8_fused_ops': fused, 'int8_weights': {'int8': weights_of(quantized)},
        'profile_ms': profile, 'calib_mode': args.calib_mode,
        'calib_samples': quantized['calib_samples'], 'calib_seconds': calib_seconds,
        'int8_vs_fp32_max_prob_diff': float(np.abs(probs['int8'] -
                                                   probs['gluonbert_fp32']).max()),
        'isa': deploy.int8_isa(), 'amx': str(amx_status()), 'mxnet': mx.__version__,
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'load_average_start': load_start, 'load_average': os.getloadavg(), 'results': results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print(f'infer_base: {args.base_model}, B={batch}, T={length}, {args.base_batches} batches '
          f'per pass; CPU {report["isa"]["cpu"]} ({", ".join(report["isa"]["flags"])}; '
          f'{report["amx"]}); '
          f'INT8 weights {report["int8_weights"]["int8"]}; '
          f'load average {load_start[0]:.2f} at the start, '
          f'{", ".join(f"{x:.2f}" for x in report["load_average"])} at the end')
    print('| run | GFLOP/s best (model FLOPs) | median | executed GFLOP/s best | '
          'of its ceiling |')
    print('| --- | --- | --- | --- | --- |')
    for name, r in results.items():
        share = f'{r["fraction_of_ceiling"]:.2f}' if 'fraction_of_ceiling' in r else 'ceiling'
        done = f'{r["gflops_executed_best"]:.1f}' if 'gflops_executed_best' in r else '-'
        print(f'| {name} | {r["gflops_best"]:.1f} | {r["gflops_median"]:.1f} | {done} | '
              f'{share} |')
    print(f'INT8 / fp32: {report["int8_vs_fp32"]:.2f}x; JSON -> {args.out}')
    print_profile(profile)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mrpc', default=DEFAULT_MRPC, help='MSR paraphrase training file')
    parser.add_argument('--model', default='bert_6_384_12',
                        help='configuration of the random-weight model')
    parser.add_argument('--finetuned', default=None,
                        help='a fine-tuned MRPC model directory instead (its configuration and '
                             'vocabulary): also scores accuracy and F1 on the seeded dev split')
    parser.add_argument('--hf', action='store_true',
                        help='also time HuggingFace BERT of the same shape (random weights): '
                             'eager, torch.compile, quantize_dynamic int8, bf16 autocast')
    parser.add_argument('--pairs', type=int, default=1024)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--calib-batches', type=int, default=10)
    parser.add_argument('--calib-mode', default='naive', choices=['naive', 'entropy', 'clip'])
    parser.add_argument('--max-seq-length', type=int, default=128)
    parser.add_argument('--max-batch-tokens', type=int, default=None,
                        help="also time fp32 and INT8 with predict's token-budget batching")
    parser.add_argument('--tensor-wise', action='store_true',
                        help='also time an INT8 model with one weight scale per matrix')
    parser.add_argument('--profile', action='store_true',
                        help='also profile one pass of the fp32 and INT8 graphs per operator')
    parser.add_argument('--infer-base', action='store_true',
                        help='measure the infer_base INT8 column instead (GFLOP/s against the '
                             'fp32 and INT8 GEMM ceilings); needs no data file')
    parser.add_argument('--base-model', default='bert_12_768_12')
    parser.add_argument('--base-length', type=int, default=128)
    parser.add_argument('--base-batches', type=int, default=2,
                        help='batches of --batch-size sequences per timed pass')
    parser.add_argument('--base-vocab', type=int, default=30522)
    parser.add_argument('--gemm-size', type=int, default=2048)
    parser.add_argument('--gemm-count', type=int, default=10,
                        help='products per timed GEMM window')
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'benchmarks', 'int8.json'))
    args = parser.parse_args(argv)
    from gluonbert.platform import enable_amx, tune_allocator
    tune_allocator()      # before MXNet, as `gluonbert predict` does
    enable_amx()          # oneDNN's AMX int8/bf16 kernels where the CPU has them
    if args.infer_base:
        return infer_base(args)
    if not os.path.isfile(args.mrpc):
        print(f'skipped: {args.mrpc} not found (the MSR paraphrase training file; see '
              '../shared/data/README.md or pass --mrpc)')
        return 0
    import mxnet as mx
    import numpy as np

    from gluonbert.serve import deploy
    from gluonbert.serve.predict import load_classifier
    from gluonbert.data.tasks import TaskSpec, read_examples
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        if args.finetuned:
            # the seeded split finetune uses: time and score the dev pairs, calibrate on the
            # first training pairs (written as a GLUE-format file)
            from gluonbert.data import load_mrpc
            split = load_mrpc(os.path.dirname(os.path.abspath(args.mrpc)))
            records, tuned = split.dev[:args.pairs], args.finetuned
            calib = os.path.join(tmp, 'calib.tsv')
            with open(calib, 'w', encoding='utf-8') as f:
                f.write('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n')
                for i, r in enumerate(split.train[:args.calib_batches * args.batch_size]):
                    f.write(f'{r.label}\t{2 * i}\t{2 * i + 1}\t{r.text_a}\t{r.text_b}\n')
            weights, where = f'fine-tuned: {args.finetuned}', split.split
            with open(os.path.join(tuned, 'finetune.json'), encoding='utf-8') as f:
                bert = json.load(f)['bert']
            model = f'bert_{bert["num_layers"]}_{bert["units"]}_{bert["num_heads"]}'
        else:
            records = read_examples(args.mrpc, TaskSpec(labels=['0', '1']))[:args.pairs]
            tuned, calib = os.path.join(tmp, 'tuned'), args.mrpc
            os.makedirs(tuned)
            vocab_size = mrpc_vocab(os.path.join(tuned, 'vocab.txt'), records)
            random_classifier_dir(tuned, args.model, vocab_size, args.max_seq_length)
            weights, where = 'random (TruncNorm 0.02)', f'first pairs of {args.mrpc}'
            model = args.model
        _, transform, _ = load_classifier(tuned, [mx.cpu()])
        samples = [transform((r.text_a, r.text_b)) for r in records]
        lengths = [int(s[2]) for s in samples]
        deploy.export(tuned, os.path.join(tmp, 'fp32'))
        start = time.perf_counter()
        quantized = deploy.quantize(tuned, calib, os.path.join(tmp, 'int8'),
                                    calib_mode=args.calib_mode,
                                    num_calib_batches=args.calib_batches,
                                    batch_size=args.batch_size)
        calib_seconds = time.perf_counter() - start
        directories = {'gluonbert_fp32': tuned, 'exported_fp32': os.path.join(tmp, 'fp32'),
                       'int8': os.path.join(tmp, 'int8')}
        int8_weights = {'int8': weights_of(quantized)}
        if args.tensor_wise:        # one weight scale per matrix, beside the default one
            directories['int8_tensorwise'] = os.path.join(tmp, 'int8_tensorwise')
            int8_weights['int8_tensorwise'] = weights_of(deploy.quantize(
                tuned, calib, directories['int8_tensorwise'], calib_mode=args.calib_mode,
                num_calib_batches=args.calib_batches, batch_size=args.batch_size,
                channel_wise=False))
        extra = None
        if args.hf:
            with open(os.path.join(tuned, 'finetune.json'), encoding='utf-8') as f:
                extra = hf_runners(json.load(f)['bert'], samples, args.batch_size,
                                   transform.pad_id)
        results, probs = time_models(
            directories, samples, args.batch_size, args.repeats, extra,
            args.max_batch_tokens, budget_models=('gluonbert_fp32', 'int8', 'int8_tensorwise'))
        profile = profile_ops({'gluonbert_fp32': tuned, 'int8': os.path.join(tmp, 'int8')},
                              samples, args.batch_size) if args.profile else None
    if args.finetuned:
        from gluonbert.serve.metrics import classification_report
        gold = np.array([int(r.label) for r in records])
        for name in results:        # HF runs have random weights: speed only
            if not name.startswith('hf_'):
                results[name].update(classification_report(probs[name].argmax(1), gold))
    base = results['gluonbert_fp32']['pairs_per_s_best']
    for name in results:
        results[name]['speedup_vs_gluonbert_fp32'] = results[name]['pairs_per_s_best'] / base
    report = {
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'model': model, 'weights': weights, 'pairs': len(samples), 'data': where,
        'batch_size': args.batch_size, 'length_mean': float(np.mean(lengths)),
        'length_max': int(max(lengths)), 'calib_mode': args.calib_mode,
        'calib_samples': quantized['calib_samples'], 'calib_seconds': calib_seconds,
        'int8_vs_fp32_max_prob_diff': float(np.abs(probs['int8'] -
                                                   probs['gluonbert_fp32']).max()),
        'int8_weights': int8_weights,
        'batching': {'batch_size': padding_stats(samples, args.batch_size)},
        'profile_ms': profile, 'load_average_start': load_start,
        'isa': deploy.int8_isa(), 'amx': str(amx_status()), 'mxnet': mx.__version__,
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'load_average': os.getloadavg(), 'results': results,
    }
    if args.max_batch_tokens:
        report['batching'][f'tokens{args.max_batch_tokens}'] = padding_stats(
            samples, None, args.max_batch_tokens)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print(f'{model}, {len(samples)} MRPC pairs (mean length {report["length_mean"]:.1f}, '
          f'max {report["length_max"]}), batch {args.batch_size}; CPU {report["isa"]["cpu"]} '
          f'({", ".join(report["isa"]["flags"])}); INT8 weights: ' +
          ', '.join(f'{k} {v}' for k, v in int8_weights.items()))
    print('| model | pairs/s best | median | vs gluonbert fp32 | accuracy | F1 |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, r in results.items():
        scores = f'{r["accuracy"]:.4f} | {r["f1"]:.4f}' if 'accuracy' in r else '- | -'
        print(f'| {name} | {r["pairs_per_s_best"]:.1f} | {r["pairs_per_s_median"]:.1f} | '
              f'{r["speedup_vs_gluonbert_fp32"]:.2f}x | {scores} |')
    for name, stats in report['batching'].items():
        print(f'batching {name}: {stats["batches"]} batches of {stats["rows_mean"]:.1f} rows on '
              f'average, {stats["padded_tokens"]} padded tokens for {stats["real_tokens"]} real')
    print(f'load average {load_start[0]:.2f} at the start, '
          f'{", ".join(f"{x:.2f}" for x in report["load_average"])} at the end')
    print_profile(profile)
    print(f'calibration ({args.calib_mode}, {quantized["calib_samples"]} pairs): '
          f'{calib_seconds:.1f} s; JSON -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
