"""``benchmarks/run.py --quick`` runs every workload of every implementation end to end.

A harness check: nothing about speed is asserted, only that each (workload, implementation)
pair produced a well-formed result row and that the table and JSON were written, and that
gluonbert's rows ran the CLI's code: the engine's step (its optimiser, gradient norms, the
task's metrics and the schedule's rates come back in the row) and ``predict_proba``.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ('torch', 'transformers'))
#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_every_workload(tmp_path):
    out = tmp_path / 'results.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'), '--quick',
                           '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'ratio gluonbert/ref' in proc.stdout
    result = json.loads(out.read_text())
    assert result['meta']['quick'] is True
    assert result['meta']['threads'] == 2
    rows = result['rows']
    by_pair = {(r['workload'], r['impl']): r for r in rows}
    hf_impls = ['hf-eager', 'hf-compile', 'hf-bf16'] if HAS_TORCH else []
    expected_impls = ['gluonbert', 'gluonnlp'] + hf_impls
    for workload in ('train_base', 'infer_base', 'pretrain_d2l', 'finetune_mrpc'):
        for impl in expected_impls:
            row = by_pair[(workload, impl)]
            assert row['status'] == 'ok', row
            assert len(row['times_s']) == 1 and row['median_s'] > 0
            assert row['items_per_s_median'] > 0 and row['gflops_median'] > 0
            assert row['peak_rss_mb'] >= row['rss_before_mb'] > 0
            # peak memory during the steps, for every implementation
            assert 0 < row['step_peak_rss_mb'] <= row['peak_rss_mb'] + 1
        ratios = by_pair[(workload, 'gluonbert')]['ratios']
        assert set(ratios) >= {'gluonnlp'}
        assert ratios['gluonnlp']['step_peak_rss'] > 0
        if HAS_TORCH:
            assert ratios['hf-best']['impl'] in ('hf-eager', 'hf-compile')   # not bf16
            assert 'hf-bf16' in ratios
            assert by_pair[(workload, 'hf-bf16')]['autocast_dtype'] == 'bfloat16'
    _check_engine_rows(by_pair)
    gemm = [r for r in rows if r['workload'] == 'gemm' and r['status'] == 'ok']
    assert {r['impl'] for r in gemm} == ({'mxnet', 'torch'} if HAS_TORCH else {'mxnet'})
    assert result['meta']['gemm_ceiling_gflops'] > 0
    finetune = by_pair[('finetune_mrpc', 'gluonbert')]
    assert finetune['real_tokens_per_rep'] <= finetune['tokens_per_rep']
    cpu = result['meta']['cpu']
    assert 'model' in cpu       # None on CPUs whose /proc/cpuinfo has no 'model name'
    assert set(cpu['isa']) >= {'avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_tile',
                               'avx512_bf16'}
    assert 'CPU: ' in proc.stdout
    cli_impls = ['gluonbert', 'gluonnlp'] + hf_impls
    for impl in cli_impls:
        # --quick: two whole epochs over 40 synthetic pairs; the second is the timed one
        row = by_pair[('finetune_minilm_mrpc', impl)]
        assert row['status'] == 'ok', row
        assert row['window'] == 'epoch' and row['timed_windows'] == [1]
        assert row['window_sequences'] == [36, 36]    # 90% of 40 pairs, every one per epoch
        assert row['items_per_s_median'] > 0 and row['median_s'] > 0
        assert 0 < row['step_peak_rss_mb'] <= row['peak_rss_mb'] + 1
        row = by_pair[('predict_minilm', impl)]
        assert row['status'] == 'ok', row
        assert row['pairs'] == 40 and row['items_per_rep'] == 40
        assert row['real_tokens_per_rep'] <= row['tokens_per_rep']
    engine = by_pair[('finetune_minilm_mrpc', 'gluonbert')]
    assert set(engine['ratios']) >= {'gluonnlp'}
    assert [e['epoch'] for e in engine['epoch_records']] == [1, 2]
    assert engine['times_s'] == [round(engine['epoch_records'][1]['seconds'], 5)]
    # one peak reading per engine log window (the updates only), the largest reported
    assert len(engine['window_peak_rss_mb']) == len(engine['engine_history'])
    assert engine['step_peak_rss_mb'] == max(engine['window_peak_rss_mb'])
    prep = [r for r in rows if r['workload'] == 'data_prep']
    assert prep and all(r['status'] in ('ok', 'skipped') for r in prep), prep


def _check_engine_rows(by_pair):
    """gluonbert's train_base / finetune_mrpc / pretrain_d2l rows come from the engine's step
    (FinetuningTask / PretrainingTask, make_trainer, ShardedStep with clipping, the CLI's
    defaults) and infer_base from predict_proba; a hand-written step has none of this."""
    import math

    from benchmarks.spec import workloads
    from gluonbert.train.config import FinetuneConfig, PretrainConfig
    from gluonbert.train.optim import WarmupLinearSchedule, create_optimizer
    spec = {w.name: w for w in workloads(quick=True)}
    for name, config, metrics in (
            ('train_base', FinetuneConfig(), {'loss', 'accuracy'}),
            ('finetune_mrpc', FinetuneConfig(), {'loss', 'accuracy'}),
            ('pretrain_d2l', PretrainConfig(data=''),
             {'mlm_loss', 'mlm_acc', 'nsp_loss', 'nsp_acc'})):
        row, w = by_pair[(name, 'gluonbert')], spec[name]
        per_rep = len(row.get('padded_lengths', [0]))
        assert row['updates'] == (w.warmup + w.repeat) * per_rep
        # the optimiser the engine creates for the CLI's default configuration
        assert row['optimizer'] == type(create_optimizer(config.optimizer)).__name__
        assert row['max_grad_norm'] == config.optimizer.max_grad_norm == 1.0
        # ShardedStep.update's global norm before clipping, one per update
        assert len(row['grad_norms']) == row['updates']
        assert all(math.isfinite(n) and n > 0 for n in row['grad_norms'])
        # the task's metrics over the DeviceSums of every update
        assert set(row['engine_metrics']) == metrics
        assert all(math.isfinite(v) for v in row['engine_metrics'].values())
        # the engine's warm-up/linear schedule at the CLI's default learning rate
        schedule = WarmupLinearSchedule(config.optimizer.lr, row['updates'],
                                        config.optimizer.warmup_ratio)
        assert row['learning_rates'] == [schedule(i) for i in range(row['updates'])]
    infer = by_pair[('infer_base', 'gluonbert')]
    assert infer['net'] == 'BERTClassifier'
    assert infer['probabilities_shape'] == [spec['infer_base'].batch_size, 2]
    assert infer['probability_sum_error'] < 1e-5


def test_memory_targets_cover_every_training_workload():
    from benchmarks import report
    rows = []
    for workload, mine, theirs in (('train_base', 90.0, 100.0), ('pretrain_d2l', 120.0, 100.0),
                                   ('finetune_minilm_mrpc', 50.0, 50.0)):
        for impl, mib in (('gluonbert', mine), ('gluonnlp', theirs)):
            rows.append({'workload': workload, 'impl': impl, 'status': 'ok', 'median_s': 1.0,
                         'min_s': 1.0, 'items_per_rep': 1, 'peak_rss_mb': mib + 10,
                         'step_peak_rss_mb': mib})
    report.add_ratios(rows)
    memory = {t['target'].split(':')[0]: t for t in report.check_targets(rows)
              if 'peak RSS' in t['target']}
    assert set(memory) == {'train_base', 'pretrain_d2l', 'finetune_minilm_mrpc'}
    assert memory['train_base']['met'] and memory['finetune_minilm_mrpc']['met']
    assert not memory['pretrain_d2l']['met'] and memory['pretrain_d2l']['measured'] == 1.2


def test_quick_finetune_cli_capped_updates(tmp_path):
    """``--max-updates``: timed from the engine's log records after the warm-up updates."""
    out = tmp_path / 'results.json'
    impls = 'gluonbert,hf-eager' if HAS_TORCH else 'gluonbert'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'), '--quick',
                           '--only', 'finetune_minilm_mrpc', '--impls', impls,
                           '--max-updates', '2', '--out', str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r['impl']: r for r in json.loads(out.read_text())['rows']}
    from benchmarks.cli_workloads import WARMUP_UPDATES
    for impl in impls.split(','):
        row = rows[impl]
        assert row['status'] == 'ok', row
        assert row['updates'] == WARMUP_UPDATES + 2
        assert row['window'] == f'{WARMUP_UPDATES} updates' and len(row['window_seconds']) == 1
        assert row['items_per_s_median'] > 0
    engine = rows['gluonbert']
    assert [h['step'] for h in engine['engine_history']] == [WARMUP_UPDATES, WARMUP_UPDATES + 2]
    assert len(engine['window_peak_rss_mb']) == 2
    if HAS_TORCH:
        assert rows['gluonbert']['window_sequences'] == rows['hf-eager']['window_sequences']


def test_cpu_info_reads_model_and_isa_flags(tmp_path):
    from benchmarks import run as bench_run
    fake = tmp_path / 'cpuinfo'
    fake.write_text('processor\t: 0\nmodel name\t: Test CPU 9000\n'
                    'flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile\n\n'
                    'processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n')
    cpu = bench_run.cpu_info(str(fake))
    assert cpu['model'] == 'Test CPU 9000'
    assert cpu['isa']['avx2'] and cpu['isa']['avx512_bf16'] and cpu['isa']['amx_tile']
    assert not cpu['isa']['avx512_vnni'] and not cpu['isa']['avx_vnni']
    line = bench_run.cpu_line(cpu)
    assert line.startswith('CPU: Test CPU 9000') and 'amx_tile' in line and 'vnni' not in line
    assert bench_run.cpu_info(str(tmp_path / 'missing'))['model'] is None


def test_profile_finetune_quick(tmp_path):
    """``benchmarks/profile_finetune.py --quick``: the engine's step profiled end to end."""
    out = tmp_path / 'profile.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'profile_finetune.py'),
                           '--quick', '--updates', '2', '--profile-updates', '1', '--json',
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result['natural']['wall_s']) == 2 and min(result['natural']['wall_s']) > 0
    assert len(result['natural']['cpu_s']) == 2 and result['data_next_update_s']['max'] > 0
    assert result['warmup_walls_s'] and all(w > 0 for w in result['warmup_walls_s'])
    names = {o['name'] for o in result['profiler_ops'] if o['section'] == 'operator'}
    assert {'FullyConnected', '_backward_FullyConnected'} <= names
    assert set(result['modes']) == {'plain hybridize()', 'static_alloc, bucketed (engine)',
                                    'static_alloc+static_shape, all padded to max_len'}
    assert all(m['sequences_per_s'] > 0 for m in result['modes'].values())
    assert 'static_alloc' in proc.stdout


def test_finetune_seeds_sweeps_and_resumes(tmp_path, converted_dir):
    """``benchmarks/finetune_seeds.py``: every (optimizer, seed) run is the ``finetune`` command,
    the table and JSON summarise them, and a second call reads the finished runs instead of
    running them again."""
    from .train.synthetic import write_paraphrase_tsv
    data = tmp_path / 'data'
    data.mkdir()
    # the layout of the real MRPC file: the sweep's seeded --dev-fraction split applies
    write_paraphrase_tsv(data / 'msr_paraphrase_train.txt', 96, seed=1)
    out = tmp_path / 'sweep'
    command = [sys.executable, os.path.join(ROOT, 'benchmarks', 'finetune_seeds.py'),
               '--data-dir', str(data), '--from-converted', converted_dir,
               '--seeds', '0,1', '--optimizers', 'bertadam,adamw', '--cpus', '1', '--out',
               str(out), '--', '--epochs', '2', '--max-seq-length', '32', '--batch-size', '16',
               '--lr', '1e-3']
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    result = json.loads((out / 'results.json').read_text())
    runs = {(r['optimizer'], r['seed']): r for r in result['runs']}
    assert set(runs) == {('bertadam', 0), ('bertadam', 1), ('adamw', 0), ('adamw', 1)}
    for (optimizer, seed), run in runs.items():
        metrics = json.loads((out / f'{optimizer}-seed{seed}' / 'metrics.json').read_text())
        assert run['dev_accuracy'] == metrics['best']['dev_accuracy'] and run['epochs'] == 2
        assert run['degenerate'] == (metrics['epochs'][-1]['train_accuracy']
                                     <= metrics['train_majority'] + 0.02)
        log = (out / f'{optimizer}-seed{seed}' / 'train.log').read_text()
        assert f'--optimizer {optimizer}' in ' '.join(json.loads(
            (out / 'sweep.json').read_text())[f'{optimizer}-seed{seed}']['command'])
        assert 'updates 0..' in log
    # the two optimisers and the two seeds are different runs
    assert runs['bertadam', 0]['dev_accuracy'] != runs['adamw', 0]['dev_accuracy'] or \
        runs['bertadam', 0]['train_accuracy'] != runs['adamw', 0]['train_accuracy']
    summary = result['summary']
    for optimizer in ('bertadam', 'adamw'):
        mine = [r['dev_accuracy'] for r in result['runs'] if r['optimizer'] == optimizer]
        assert summary[optimizer]['mean_dev_accuracy'] == pytest.approx(sum(mine) / 2)
        assert summary[optimizer]['worst_dev_accuracy'] == min(mine)
    assert '| bertadam |' in first.stdout and '| adamw |' in first.stdout
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'gluonbert.cli finetune' not in second.stdout          # nothing ran again
    assert json.loads((out / 'results.json').read_text())['runs'] == result['runs']
