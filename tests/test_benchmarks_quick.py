"""``benchmarks/run.py --quick`` runs every workload of every implementation end to end.

A harness check: nothing about speed is asserted, only that each (workload, implementation)
pair produced a well-formed result row and that the table and JSON were written.
"""
import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = all(importlib.util.find_spec(m) is not None for m in ('torch', 'transformers'))


def test_quick_benchmark_runs_every_workload(tmp_path):
    out = tmp_path / 'results.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'), '--quick',
                           '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'ratio gluonbert/ref' in proc.stdout
    result = json.loads(out.read_text())
    assert result['meta']['quick'] is True
    assert result['meta']['threads'] == 2
    rows = result['rows']
    by_pair = {(r['workload'], r['impl']): r for r in rows}
    expected_impls = ['gluonbert', 'gluonnlp'] + (['hf-eager', 'hf-compile'] if HAS_TORCH else [])
    for workload in ('train_base', 'infer_base', 'pretrain_d2l', 'finetune_mrpc'):
        for impl in expected_impls:
            row = by_pair[(workload, impl)]
            assert row['status'] == 'ok', row
            assert len(row['times_s']) == 1 and row['median_s'] > 0
            assert row['items_per_s_median'] > 0 and row['gflops_median'] > 0
            assert row['peak_rss_mb'] >= row['rss_before_mb'] > 0
        ratios = by_pair[(workload, 'gluonbert')]['ratios']
        assert set(ratios) >= {'gluonnlp'}
        if HAS_TORCH:
            assert ratios['hf-best']['impl'] in ('hf-eager', 'hf-compile')
    gemm = [r for r in rows if r['workload'] == 'gemm' and r['status'] == 'ok']
    assert {r['impl'] for r in gemm} == ({'mxnet', 'torch'} if HAS_TORCH else {'mxnet'})
    assert result['meta']['gemm_ceiling_gflops'] > 0
    finetune = by_pair[('finetune_mrpc', 'gluonbert')]
    assert finetune['real_tokens_per_rep'] <= finetune['tokens_per_rep']
    prep = [r for r in rows if r['workload'] == 'data_prep']
    assert prep and all(r['status'] in ('ok', 'skipped') for r in prep), prep
