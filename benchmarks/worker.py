"""Runs one (workload, implementation) pair in this process and writes its result rows.

Started by :mod:`benchmarks.run` as ``python -m benchmarks.worker JOB.json OUT.json`` with the
thread environment already set (it must be set before MXNet or torch is imported). ``JOB.json``
holds ``{"pairs": [[impl, Workload.to_dict()], ...], "threads": ..., "context": {...}}``; several
pairs share one process only in ``--quick`` mode. ``OUT.json`` receives a list of
result rows (:func:`benchmarks.measure.make_result`), or an ``error`` row per workload that
failed, with the end of its traceback.
"""
import json
import os
import sys
import traceback

if __package__ in (None, ''):  # ``python benchmarks/worker.py``: make ``benchmarks`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.spec import Workload  # noqa: E402


def _run_one(workload, impl, threads, context):
    # First, before MXNet is imported, what the gluonbert command does to its process
    # (gluonbert.platform): glibc's allocator settings and oneDNN's AMX kernels where the CPU
    # has them. gluonnlp-malloc takes the allocator settings and nothing else of gluonbert.
    if impl in ('gluonbert', 'gluonnlp-malloc'):
        from gluonbert.platform import enable_amx, tune_allocator
        tune_allocator()
        if impl == 'gluonbert':
            enable_amx()
    if workload.kind in ('cli_finetune', 'cli_predict'):
        if impl.startswith('hf'):
            import torch
            torch.set_num_threads(threads)
        from benchmarks import cli_workloads
        return cli_workloads.run(workload, impl, context)
    if impl in ('gluonbert', 'gluonnlp', 'gluonnlp-malloc', 'mxnet'):
        from benchmarks import impl_mxnet
        if workload.kind == 'gemm':
            return impl_mxnet.run_gemm(workload)
        if impl == 'gluonbert':
            from benchmarks import impl_gluonbert
            return impl_gluonbert.run_model_workload(workload, impl, context)
        return impl_mxnet.run_model_workload(workload, impl, context)
    if impl in ('hf-eager', 'hf-compile', 'hf-bf16', 'torch'):
        import torch
        torch.set_num_threads(threads)
        from benchmarks import impl_torch
        if workload.kind == 'gemm':
            return impl_torch.run_gemm(workload)
        return impl_torch.run_model_workload(workload, impl, context)
    raise ValueError(f'unknown implementation {impl!r}')


def error_row(workload_name, impl, message, status='error'):
    """A result row for a pair that did not run (``status``: ``error`` or ``skipped``)."""
    return {'workload': workload_name, 'impl': impl, 'variant': '', 'status': status,
            'note': message}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    job_path, out_path = argv
    with open(job_path, encoding='utf-8') as f:
        job = json.load(f)
    rows = []
    for impl, spec in job['pairs']:
        workload = Workload.from_dict(spec)
        try:
            rows.extend(_run_one(workload, impl, job['threads'], job['context']))
        except Exception:  # a failed pair is reported in the table, the others still run
            tail = traceback.format_exc().strip().splitlines()[-12:]
            rows.append(error_row(workload.name, impl, '\n'.join(tail)))
    tmp = out_path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(rows, f)
    os.replace(tmp, out_path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
