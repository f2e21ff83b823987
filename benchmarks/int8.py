"""fp32 vs INT8 serving throughput of a BERT classifier on MRPC-length pairs, side by side.

A classifier of the given configuration (default ``bert_6_384_12``, MiniLM-L6-H384's shape)
with random weights is saved as a fine-tuned model directory, exported as fp32 and quantized
to INT8 (``gluonbert.deploy``, calibration on the MRPC file) and the three directories are
timed through the path ``gluonbert predict`` runs (:func:`gluonbert.train.predict.
predict_proba`: length-sorted batches, batchify, forward, softmax) on the first ``--pairs``
pairs of the real MRPC training file. Speed does not depend on the weights; accuracy does:
with ``--finetuned DIR`` (a model fine-tuned on MRPC's seeded split) that model is used
instead, timed on the dev pairs of the split, and scored on them (accuracy, F1), fp32 and
INT8 side by side (calibration: the first training pairs of the split).

``--hf`` adds HuggingFace's ``BertForSequenceClassification`` of the same shape (random
weights; speed only) on the same batches: eager fp32, ``torch.compile`` fp32, PyTorch's
dynamic int8 (``quantize_dynamic`` on the Linear layers) and bf16 autocast.

The vocabulary is made of MRPC's own words (lower-cased, punctuation split), so a pair's
token count is its word count: about 10-15% shorter than with BERT's WordPiece vocabulary,
in which rare words are split.

Usage::

    python benchmarks/int8.py                           # MiniLM shape, 1024 pairs, batch 32
    python benchmarks/int8.py --model bert_tiny_test --pairs 128 --out /tmp/int8.json
    python benchmarks/int8.py --finetuned runs/minilm-mrpc       # real weights, dev accuracy

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
    from gluonbert.train.predict import _batches_by_length
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=config['vocab_size'], hidden_size=config['units'],
        num_hidden_layers=config['num_layers'], num_attention_heads=config['num_heads'],
        intermediate_size=config['hidden_size'], max_position_embeddings=config['max_length'],
        type_vocab_size=2, num_labels=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0)).eval()
    batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
    batches = []
    for index in _batches_by_length(samples, batch_size):
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


def time_models(directories, samples, batch_size, repeats, extra=None):
    """Pairs per second of predict's batching and forward pass for each directory (best and
    median of repeats after one warm-up pass; the models take turns within each repeat, so
    that other jobs on the machine slow them alike), and their probabilities. ``extra``:
    more runners (name -> function of no arguments returning the probabilities)."""
    import mxnet as mx

    from gluonbert.train.predict import load_classifier, predict_proba
    runners = {}
    for name, directory in directories.items():
        net, transform, _ = load_classifier(directory, [mx.cpu()])
        runners[name] = (lambda net=net, pad=transform.pad_id:
                         predict_proba(net, samples, batch_size, [mx.cpu()], pad))
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
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'benchmarks', 'int8.json'))
    args = parser.parse_args(argv)
    if not os.path.isfile(args.mrpc):
        print(f'skipped: {args.mrpc} not found (the MSR paraphrase training file; see '
              '../shared/data/README.md or pass --mrpc)')
        return 0
    import mxnet as mx
    import numpy as np

    from gluonbert import deploy
    from gluonbert.train.predict import load_classifier
    from gluonbert.train.tasks import TaskSpec, read_examples
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
        extra = None
        if args.hf:
            with open(os.path.join(tuned, 'finetune.json'), encoding='utf-8') as f:
                extra = hf_runners(json.load(f)['bert'], samples, args.batch_size,
                                   transform.pad_id)
        results, probs = time_models(
            {'gluonbert_fp32': tuned, 'exported_fp32': os.path.join(tmp, 'fp32'),
             'int8': os.path.join(tmp, 'int8')}, samples, args.batch_size, args.repeats, extra)
    if args.finetuned:
        from gluonbert.train.metrics import classification_report
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
        'isa': deploy.int8_isa(), 'mxnet': mx.__version__,
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
        'load_average': os.getloadavg(), 'results': results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    print(f'{model}, {len(samples)} MRPC pairs (mean length {report["length_mean"]:.1f}, '
          f'max {report["length_max"]}), batch {args.batch_size}; CPU {report["isa"]["cpu"]} '
          f'({", ".join(report["isa"]["flags"])})')
    print('| model | pairs/s best | median | vs gluonbert fp32 | accuracy | F1 |')
    print('| --- | --- | --- | --- | --- | --- |')
    for name, r in results.items():
        scores = f'{r["accuracy"]:.4f} | {r["f1"]:.4f}' if 'accuracy' in r else '- | -'
        print(f'| {name} | {r["pairs_per_s_best"]:.1f} | {r["pairs_per_s_median"]:.1f} | '
              f'{r["speedup_vs_gluonbert_fp32"]:.2f}x | {scores} |')
    print(f'calibration ({args.calib_mode}, {quantized["calib_samples"]} pairs): '
          f'{calib_seconds:.1f} s; JSON -> {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
