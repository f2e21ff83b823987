"""Side-by-side speed benchmark: gluonbert vs GluonNLP 0.10 vs HuggingFace transformers.

Usage (from the repository root)::

    python benchmarks/run.py [--quick] [--out results.json] [--mrpc PATH] [--threads 2]
                             [--only train_base,infer_base] [--impls gluonbert,gluonnlp]

Each (workload, implementation) pair runs in its own subprocess (``benchmarks/worker.py``), with
the same thread environment for all (``OMP_NUM_THREADS`` etc., ``gluonbert.platform``'s MXNet
settings, ``torch.set_num_threads``), so that peak RSS belongs to one framework and one
workload. Prints a table and writes a JSON file (``runs/benchmarks/results.json`` by default).

``--quick`` runs every workload once at a tiny size, one process per framework: a check that the harness works (used by ``tests/test_benchmarks_quick.py``), not a
measurement.
"""
import argparse
import concurrent.futures
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import report  # noqa: E402
from benchmarks.inputs import mrpc_lengths, synthetic_mrpc_lengths  # noqa: E402
from benchmarks.spec import IMPLEMENTATIONS, workloads  # noqa: E402
from benchmarks.worker import error_row  # noqa: E402


def has_torch():
    """True when torch and transformers are importable (checked without importing them)."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ('torch', 'transformers'))


def child_env(threads):
    """The environment of every worker: identical thread settings for all frameworks."""
    from gluonbert.platform import recommended_env
    env = dict(os.environ)
    env.update(recommended_env(threads))
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('MXNET_STORAGE_FALLBACK_LOG_VERBOSE', '0')
    env.setdefault('TOKENIZERS_PARALLELISM', 'false')
    return env


#: ISA flags of /proc/cpuinfo that decide which kernels are fast (recorded with every run).
def cpu_info(path=None):
    """What every result records of this machine: the CPU model (None when unknown), the ISA
    flags of :data:`gluonbert.platform.ISA_FLAGS` (``{flag: bool}``), the logical CPUs, and
    whether oneDNN's AMX kernels are on in the gluonbert processes
    (:func:`gluonbert.platform.amx_status`, what the ``gluonbert`` command reports)."""
    from gluonbert.platform import amx_status
    from gluonbert.platform import cpu_info as read_cpuinfo
    info = read_cpuinfo(path)
    return {'model': None if info.model == 'unknown' else info.model, 'isa': info.isa(),
            'logical_cpus': os.cpu_count(), 'amx': str(amx_status())}


def cpu_line(cpu):
    """One line for the printed table: model and the ISA flags present."""
    present = [flag for flag, on in cpu['isa'].items() if on]
    return (f'CPU: {cpu["model"] or "unknown"}; ISA: {", ".join(present) or "none of interest"}'
            f'; {cpu.get("amx", "AMX unknown")}')


def machine():
    """lscpu summary, memory, load, library versions."""
    info = {'python': platform.python_version(), 'platform': platform.platform(),
            'cpu_count': os.cpu_count()}
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(':', 1) for line in out.splitlines() if ':' in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        for key in ('Model name', 'CPU(s)', 'Thread(s) per core', 'Core(s) per socket',
                    'Socket(s)', 'L2 cache', 'L3 cache', 'Hypervisor vendor'):
            if key in fields:
                info[key] = fields[key]
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open('/proc/meminfo') as f:
            info['mem_total_gib'] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    versions = {}
    for package in ('mxnet', 'gluonnlp', 'numpy', 'torch', 'transformers'):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    info['versions'] = versions
    return info


def _run_child(job, env, timeout):
    """Runs ``benchmarks.worker`` on ``job``; returns its rows (error rows on failure)."""
    pairs = [(impl, w['name']) for impl, w in job['pairs']]
    with tempfile.TemporaryDirectory(prefix='gluonbert-bench-') as tmp:
        job_path, out_path = os.path.join(tmp, 'job.json'), os.path.join(tmp, 'out.json')
        with open(job_path, 'w', encoding='utf-8') as f:
            json.dump(job, f)
        load = os.getloadavg()[0]
        try:
            proc = subprocess.run([sys.executable, '-m', 'benchmarks.worker', job_path, out_path],
                                  cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return [error_row(n, impl, f'timed out after {timeout} s') for impl, n in pairs]
        if proc.returncode != 0 or not os.path.exists(out_path):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            return [error_row(n, impl, f'worker exited with {proc.returncode}:\n'
                              + '\n'.join(tail)) for impl, n in pairs]
        with open(out_path, encoding='utf-8') as f:
            rows = json.load(f)
    for row in rows:
        row['load_before'] = round(load, 2)
        row['load_after'] = round(os.getloadavg()[0], 2)
    return rows


def _quick_data_dir(tmp):
    """A tiny WikiText-like corpus and MSR-format MRPC file for ``--quick``."""
    words = ('the of and to in a is was for on as by with he at from his an were are which '
             'this be that new city river music film game season team year first two').split()
    import random
    rng = random.Random(0)
    os.makedirs(os.path.join(tmp, 'wikitext-2'))
    os.makedirs(os.path.join(tmp, 'mrpc'))
    with open(os.path.join(tmp, 'wikitext-2', 'valid.txt'), 'w', encoding='utf-8') as f:
        for article in range(4):
            f.write(f' = Article {article} = \n \n')
            for _ in range(6):
                sentences = [' '.join(rng.choice(words) for _ in range(rng.randint(5, 14)))
                             .capitalize() + ' .' for _ in range(rng.randint(2, 5))]
                f.write(' ' + ' '.join(sentences) + ' \n \n')
    with open(os.path.join(tmp, 'mrpc', 'msr_paraphrase_train.txt'), 'w',
              encoding='utf-8-sig') as f:
        f.write('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n')
        for i in range(8):
            a = ' '.join(rng.choice(words) for _ in range(8)) + ' .'
            b = ' '.join(rng.choice(words) for _ in range(9)) + ' .'
            f.write(f'{i % 2}\t{100 + i}\t{200 + i}\t{a}\t{b}\n')
    return tmp


def run_data_prep(workload, env, quick, data_dir, timeout):
    """Runs ``benchmarks/data_prep.py`` (pretraining-data preparation, owned by the data
    pipeline) and turns its JSON into result rows; a row saying why when it cannot run."""
    script = os.path.join(ROOT, 'benchmarks', 'data_prep.py')
    if not os.path.exists(script):
        return [error_row(workload.name, 'gluonbert', 'benchmarks/data_prep.py is not there '
                          '(the data-pipeline benchmark is written separately)', 'skipped')]
    with tempfile.TemporaryDirectory(prefix='gluonbert-prep-') as tmp:
        out = os.path.join(tmp, 'data_prep.json')
        cmd = [sys.executable, script, '--json', out, '--workers', '1' if quick else '1,2']
        if quick:
            cmd += ['--data-dir', _quick_data_dir(os.path.join(tmp, 'data'))]
        elif data_dir:
            cmd += ['--data-dir', data_dir]
        load = os.getloadavg()[0]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return [error_row(workload.name, 'gluonbert', f'timed out after {timeout} s')]
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            status = 'error' if proc.returncode else 'skipped'
            return [error_row(workload.name, 'gluonbert', '\n'.join(tail) or 'no output',
                              status)]
        with open(out, encoding='utf-8') as f:
            result = json.load(f)
    rows = []
    base = {'workload': workload.name, 'impl': 'gluonbert', 'status': 'ok', 'flops_per_rep': 0,
            'gflops_median': 0.0, 'gflops_best': 0.0, 'tokens_per_rep': 0,
            'tokens_per_s_median': None, 'load_before': round(load, 2),
            'command': ' '.join(['python'] + cmd[1:])}
    for prep in result.get('pretraining', []):
        seconds = prep['seconds']
        rows.append(dict(base, variant=f'pretraining, {prep["workers"]} worker(s)',
                         times_s=[seconds], median_s=seconds, min_s=seconds,
                         items_per_rep=prep['examples'],
                         items_per_s_median=prep['examples_per_second'],
                         items_per_s_best=prep['examples_per_second'],
                         peak_rss_mb=prep.get('max_rss_mib_largest_process') or float('nan'),
                         note=f'examples/s; whole command incl. start-up '
                              f'{prep["command_seconds"]} s; process-tree peak '
                              f'{prep["peak_rss_mib_process_tree"]} MiB', details=prep))
    if result.get('mrpc'):
        mrpc = result['mrpc']
        rows.append(dict(base, variant='MRPC transform', times_s=[mrpc['transform_seconds']],
                         median_s=mrpc['transform_seconds'], min_s=mrpc['transform_seconds'],
                         items_per_rep=mrpc['pairs'], items_per_s_median=mrpc['pairs_per_second'],
                         items_per_s_best=mrpc['pairs_per_second'], peak_rss_mb=float('nan'),
                         note='pairs/s, BERTDatasetTransform (best of 3)', details=mrpc))
    if not rows:
        rows.append(error_row(workload.name, 'gluonbert', proc.stdout.strip()[-500:]
                              or 'data_prep.py produced no rows', 'skipped'))
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='every workload once at a tiny size (harness check, CI)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'benchmarks',
                                                      'results.json'),
                        help='JSON output (written atomically)')
    parser.add_argument('--mrpc', default=None,
                        help='msr_paraphrase_train.txt: real MRPC pair lengths for '
                             'finetune_mrpc (default: a synthetic length distribution)')
    parser.add_argument('--data-dir', default=None,
                        help='data folder for benchmarks/data_prep.py (its default if omitted)')
    parser.add_argument('--threads', type=int, default=2, help='threads for every framework')
    parser.add_argument('--only', default=None, help='comma-separated workload names')
    parser.add_argument('--impls', default=None, help='comma-separated implementations')
    parser.add_argument('--repeat', type=int, default=None, help='override timed repetitions')
    parser.add_argument('--warmup', type=int, default=None, help='override warm-up repetitions')
    parser.add_argument('--num-batches', type=int, default=None,
                        help='finetune_mrpc batches per repetition (default 6; quick 2)')
    parser.add_argument('--compile-backend', default=None,
                        help="torch.compile backend for hf-compile (default 'inductor'; "
                             "--quick: 'eager', which traces with dynamo but skips codegen)")
    parser.add_argument('--max-updates', type=int, default=None,
                        help='finetune_minilm_mrpc: time N updates after 10 warm-up updates '
                             'instead of whole epochs (a quick measurement)')
    parser.add_argument('--epochs', type=int, default=None,
                        help='finetune_minilm_mrpc: whole epochs (default 1; the first '
                             'includes graph building and is left out when there are more)')
    parser.add_argument('--predict-pairs', type=int, default=None,
                        help='predict_minilm: the first N pairs of the MRPC file (default all)')
    parser.add_argument('--timeout', type=int, default=None,
                        help='seconds per subprocess (default 1800; quick 300)')
    return parser.parse_args(argv)


def main(argv=None):
    import dataclasses
    args = parse_args(argv)
    chosen = workloads(args.quick)
    if args.only:
        keep = set(args.only.split(','))
        unknown = keep - {w.name for w in chosen}
        if unknown:
            raise SystemExit(f'--only: unknown workloads {sorted(unknown)}; expected some of '
                             f'{[w.name for w in chosen]}')
        chosen = [w for w in chosen if w.name in keep]
    overrides = {k: getattr(args, k) for k in ('repeat', 'warmup') if getattr(args, k) is not None}
    chosen = [dataclasses.replace(w, **overrides) if w.kind not in ('data_prep', 'cli_finetune')
              else w for w in chosen]
    if args.epochs is not None:
        chosen = [dataclasses.replace(w, repeat=args.epochs) if w.kind == 'cli_finetune' else w
                  for w in chosen]
    impls = [i for i in IMPLEMENTATIONS if not args.impls or i in args.impls.split(',')]
    torch_ok = has_torch()
    env = child_env(args.threads)
    timeout = args.timeout or (300 if args.quick else 1800)
    finetune = next((w for w in chosen if w.kind == 'finetune'), None)
    context = {'num_batches': args.num_batches or (2 if args.quick else 6),
               'compile_backend': args.compile_backend or ('eager' if args.quick else 'inductor')}
    default_mrpc = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'mrpc',
                                'msr_paraphrase_train.txt')
    context.update({'quick': args.quick, 'cli_mrpc': args.mrpc or default_mrpc,
                    'max_updates': args.max_updates, 'predict_pairs': args.predict_pairs})
    if args.quick:
        context['quick_pairs'] = 40
    if finetune is not None:
        if args.mrpc and not args.quick:
            if not os.path.isfile(args.mrpc):
                raise SystemExit(f'--mrpc {args.mrpc}: no such file; expected '
                                 'msr_paraphrase_train.txt')
            context['mrpc_lengths'] = mrpc_lengths(args.mrpc, max_length=finetune.seq_len)
            context['length_source'] = f'real MRPC lengths from {args.mrpc}'
        else:
            context['mrpc_lengths'] = synthetic_mrpc_lengths(max_length=finetune.seq_len)
            context['length_source'] = 'synthetic (normal fitted to MRPC: mean 54.6, sd 13.7)'

    started = time.time()
    cpu = cpu_info()
    meta = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'quick': args.quick,
            'cpu': cpu,
            'threads': args.threads, 'argv': sys.argv[1:] if argv is None else list(argv),
            'machine': machine(), 'load_start': os.getloadavg(),
            'env': {k: v for k, v in env.items() if k.startswith(('OMP_', 'MKL_', 'OPENBLAS_',
                                                                  'MXNET_', 'KMP_', 'GOMP_'))},
            'finetune_lengths': context.get('length_source')}
    rows = []
    # One process per (implementation, workload) pair, so that peak RSS is that pair's; with
    # --quick, one process per framework (MXNet, torch) to keep start-up time down.
    # Workload-major order: the implementations of one workload run back to back, under
    # similar machine load.
    jobs = []
    for workload in chosen:
        for impl in impls:
            if impl not in workload.impls or workload.kind == 'data_prep':
                continue
            family = 'torch' if impl.startswith('hf') or impl == 'torch' else 'mxnet'
            if family == 'torch' and not torch_ok:
                rows.append(error_row(workload.name, impl, 'torch/transformers not installed',
                                      'skipped'))
            elif args.quick and any(j[0] == family for j in jobs):
                next(j for j in jobs if j[0] == family)[1].append((impl, workload))
            else:
                jobs.append((family, [(impl, workload)]))
    def run_job(group):
        label = ' '.join(f'{impl}:{w.name}' for impl, w in group)
        print(f'[{time.time() - started:7.1f}s] {label} ...', flush=True)
        job = {'threads': args.threads, 'context': context,
               'pairs': [(impl, w.to_dict()) for impl, w in group]}
        return _run_child(job, env, timeout)

    def run_prep(workload):
        print(f'[{time.time() - started:7.1f}s] gluonbert:data_prep ...', flush=True)
        return run_data_prep(workload, env, args.quick, args.data_dir, timeout)

    tasks = [functools.partial(run_job, group) for _, group in jobs]
    tasks += [functools.partial(run_prep, w) for w in chosen
              if w.kind == 'data_prep' and 'gluonbert' in impls]
    # Measurements run one at a time; the --quick check runs its few processes side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=3 if args.quick else 1) as pool:
        for result in pool.map(lambda task: task(), tasks):
            rows += result
    order = {w.name: i for i, w in enumerate(chosen)}
    rows.sort(key=lambda r: (order.get(r['workload'], 99), IMPLEMENTATIONS.index(r['impl'])
                             if r['impl'] in IMPLEMENTATIONS else 99))
    report.add_ratios(rows)
    targets = report.check_targets(rows) if not args.quick else []
    meta['seconds'] = round(time.time() - started, 1)
    meta['load_end'] = os.getloadavg()
    meta['gemm_ceiling_gflops'] = report.gemm_ceiling(rows)
    table, notes = report.format_table(rows, chosen)
    print()
    if args.quick:
        print('QUICK MODE: tiny models and batches, one repetition -- a harness check, not a '
              'measurement; the titles below name the full-size workloads.')
    print(cpu_line(cpu))
    print(table)
    for line in notes:
        print(line)
    if targets:
        print('\nTargets:')
        for t in targets:
            value = '-' if t['measured'] is None else f'{t["measured"]:.2f}'
            print(f'  [{"met" if t["met"] else "MISSED"}] {t["target"]}: {value}')
    print(f'\nload average start {meta["load_start"][0]:.2f}, end {meta["load_end"][0]:.2f}; '
          f'{meta["seconds"]} s')
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump({'meta': meta, 'rows': rows, 'targets': targets}, f, indent=1)
    os.replace(tmp, args.out)
    print(f'wrote {args.out}')
    failed = [r for r in rows if r.get('status') == 'error']
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
