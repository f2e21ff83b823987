"""Ratios, target checks and the printed table of a benchmark run."""
import math

from .spec import REFERENCE_IMPLS

__all__ = ['add_ratios', 'check_targets', 'format_table', 'gemm_ceiling', 'TARGETS',
           'MEMORY_TARGETS']

#: (workload, reference, minimum ratio gluonbert / reference in median throughput): the
#: targets of issue 13. ``hf-best`` is the faster of ``hf-eager`` and ``hf-compile``
#: (``hf-bf16`` is reported, not a target).
TARGETS = [
    ('finetune_minilm_mrpc', 'gluonnlp', 1.3), ('finetune_minilm_mrpc', 'hf-best', 1.2),
    ('predict_minilm', 'gluonnlp', 1.3), ('predict_minilm', 'hf-eager', 1.5),
    ('predict_minilm', 'hf-compile', 1.0),
    ('train_base', 'gluonnlp', 1.15), ('train_base', 'hf-best', 1.0),
    ('pretrain_d2l', 'gluonnlp', 1.5), ('pretrain_d2l', 'hf-best', 1.2),
    ('infer_base', 'gluonnlp', 1.3), ('infer_base', 'hf-best', 1.1),
]
#: Training workloads whose peak memory during the steps must not exceed GluonNLP's.
MEMORY_TARGETS = ('train_base', 'pretrain_d2l', 'finetune_mrpc', 'finetune_minilm_mrpc')
#: Inference must reach this fraction of the run's GEMM ceiling.
CEILING_FRACTION = 0.85


def _ok(rows):
    return [r for r in rows if r.get('status') == 'ok']


def gemm_ceiling(rows):
    """The best median-time GFLOP/s of any GEMM row (the machine's fp32 ceiling), or None."""
    values = [r['gflops_median'] for r in _ok(rows) if r['workload'] == 'gemm']
    return max(values) if values else None


def _by_impl(rows, workload):
    found = {r['impl']: r for r in _ok(rows) if r['workload'] == workload}
    hf = [found[k] for k in ('hf-eager', 'hf-compile') if k in found]
    if hf:
        found['hf-best'] = min(hf, key=lambda r: r['median_s'])
    return found


def add_ratios(rows):
    """Adds ``ratios`` to each gluonbert row: gluonbert / reference, per reference.

    ``speed`` compares median throughput (reference median time / gluonbert median time),
    ``speed_best`` the best repetitions, ``peak_rss`` gluonbert's peak memory / the reference's
    over the whole process, ``step_peak_rss`` over the steps only (after model construction).
    """
    for workload in {r['workload'] for r in rows}:
        found = _by_impl(rows, workload)
        mine = found.get('gluonbert')
        if mine is None:
            continue
        ratios = {}
        for ref in REFERENCE_IMPLS + ('hf-best',):
            other = found.get(ref)
            if other is None:
                continue
            ratios[ref] = {
                'speed': other['median_s'] / mine['median_s'] * _work(mine, other),
                'speed_best': other['min_s'] / mine['min_s'] * _work(mine, other),
                'peak_rss': mine['peak_rss_mb'] / other['peak_rss_mb'],
                'step_peak_rss': _ratio(mine.get('step_peak_rss_mb'),
                                        other.get('step_peak_rss_mb')),
            }
            if ref == 'hf-best':
                ratios[ref]['impl'] = other['impl']
        mine['ratios'] = ratios
    return rows


def _ratio(a, b):
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _work(mine, other):
    """Corrects for a different amount of work per repetition (should be 1)."""
    if mine.get('items_per_rep') and other.get('items_per_rep'):
        return mine['items_per_rep'] / other['items_per_rep']
    return 1.0


def check_targets(rows):
    """Each speed target with the measured ratio and whether it is met (targets whose
    workload or reference did not run, e.g. with ``--only`` or ``--impls``, are left out)."""
    results = []
    ran = {r['workload'] for r in rows}
    tried = {(r['workload'], r['impl']) for r in rows}
    for workload, ref, minimum in TARGETS:
        refs = ('hf-eager', 'hf-compile') if ref == 'hf-best' else (ref,)
        if workload not in ran or not any((workload, r) in tried for r in refs):
            continue
        mine = _by_impl(rows, workload).get('gluonbert')
        ratio = (mine or {}).get('ratios', {}).get(ref, {}).get('speed')
        results.append({'target': f'{workload}: gluonbert / {ref} >= {minimum}',
                        'measured': ratio, 'met': ratio is not None and ratio >= minimum})
    if 'infer_base' in ran and 'gemm' in ran:
        ceiling = gemm_ceiling(rows)
        mine = _by_impl(rows, 'infer_base').get('gluonbert')
        fraction = mine['gflops_median'] / ceiling if mine and ceiling else None
        results.append({'target': f'infer_base: gluonbert GFLOP/s >= {CEILING_FRACTION} x GEMM '
                                  f'ceiling ({ceiling and round(ceiling, 1)} GFLOP/s)',
                        'measured': fraction,
                        'met': fraction is not None and fraction >= CEILING_FRACTION})
    for workload in MEMORY_TARGETS:
        if (workload, 'gluonnlp') not in tried:
            continue
        mine = _by_impl(rows, workload).get('gluonbert')
        rss = (mine or {}).get('ratios', {}).get('gluonnlp', {}).get('step_peak_rss')
        results.append({'target': f'{workload}: gluonbert / gluonnlp peak RSS during the '
                                  'steps <= 1.0', 'measured': rss,
                        'met': rss is not None and rss <= 1.0})
    return results


def _fmt(value, spec):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return format(value, spec)


def format_table(rows, workloads):
    """The result table as text: one line per row, ratios, then notes and errors."""
    header = (f'{"workload":<20} {"impl":<15} {"variant":<20} {"median s":>9} {"min s":>8} '
              f'{"items/s":>8} {"best/s":>8} {"tok/s":>8} {"GFLOP/s":>8} {"best":>7} '
              f'{"peakMiB":>8} {"stepMiB":>8}  ratio gluonbert/ref (median)')
    lines = [header, '-' * len(header)]
    titles = {w.name: w.title for w in workloads}
    notes = []
    for workload in [w.name for w in workloads]:
        group = [r for r in rows if r['workload'] == workload]
        if not group:
            continue
        lines.append(f'# {titles.get(workload, workload)}')
        for r in group:
            if r.get('status') != 'ok':
                first = r.get('note', '').strip().splitlines()
                lines.append(f'{workload:<20} {r["impl"]:<15} {r["status"].upper()}: '
                             f'{first[-1] if first else ""}')
                if r.get('status') == 'error':
                    notes.append(f'{workload}/{r["impl"]}:\n    '
                                 + r.get('note', '').replace('\n', '\n    '))
                continue
            ratios = r.get('ratios', {})
            text = ' '.join(f'{k}={v["speed"]:.2f}x' for k, v in ratios.items()
                            if k != 'hf-best')
            if 'hf-best' in ratios:
                text += f' hf-best={ratios["hf-best"]["speed"]:.2f}x'
            lines.append(
                f'{workload:<20} {r["impl"]:<15} {r.get("variant", "")[:20]:<20} '
                f'{r["median_s"]:>9.3f} {r["min_s"]:>8.3f} '
                f'{_fmt(r.get("items_per_s_median"), ".2f"):>8} '
                f'{_fmt(r.get("items_per_s_best"), ".2f"):>8} '
                f'{_fmt(r.get("tokens_per_s_median"), ".0f"):>8} '
                f'{r["gflops_median"]:>8.1f} {r["gflops_best"]:>7.1f} '
                f'{_fmt(r.get("peak_rss_mb"), ".0f"):>8} '
                f'{_fmt(r.get("step_peak_rss_mb"), ".0f"):>8}  {text}')
    return '\n'.join(lines), notes
