"""Timing loop, memory readings and the result record every worker returns."""
import resource
import statistics
import time

__all__ = ['time_steps', 'time_mxnet_steps', 'current_rss_mb', 'peak_rss_mb', 'reset_peak_rss', 'clear_peak_rss',
           'window_peak_rss_mb', 'make_result']


def time_steps(step, warmup, repeat):
    """Runs ``step()`` ``warmup`` times untimed, then ``repeat`` times timed.

    ``step`` must return only once its work is finished (MXNet: after ``waitall``), so that
    each wall-clock reading covers exactly one repetition.

    Outputs
    -------
    times : list of float
        Seconds of each timed repetition.
    warmup_seconds : float
        Wall-clock time of the warm-up (graph building, ``torch.compile``, ...).
    """
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times, warmup_seconds


def time_mxnet_steps(step, workload, start):
    """Waits for MXNet's set-up work begun at ``start``, then :func:`time_steps` ``step``.

    Outputs
    -------
    (setup_seconds, rss_before_mb, setup_peak_mb, times, warmup_seconds)
    """
    import mxnet as mx
    mx.nd.waitall()
    setup = time.perf_counter() - start
    rss = current_rss_mb()
    setup_peak = reset_peak_rss()
    times, warm = time_steps(step, workload.warmup, workload.repeat)
    return setup, rss, setup_peak, times, warm


def current_rss_mb():
    """Resident memory of this process now, in MiB (Linux ``/proc/self/statm``)."""
    try:
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2 ** 20
    except OSError:
        return float('nan')


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``, KiB on Linux; never
    below the current reading, which ``ru_maxrss`` can trail by a few pages)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, current_rss_mb())


def _malloc_trim():
    """Returns memory that the process freed (e.g. NumPy buffers of weight initialisation) to
    the OS (glibc ``malloc_trim``), so that it is not counted as resident during the steps."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter (``VmHWM``, also ``ru_maxrss``) of this process.

    Linux >= 4.0: writing 5 to ``/proc/self/clear_refs``. Called after the model is built, so
    that :func:`window_peak_rss_mb` measures the steps only, not construction and
    initialisation (which can peak higher, e.g. when drawing random weights in NumPy). Freed
    heap memory is first returned to the OS, for every framework alike.

    Outputs
    -------
    peak_before : float
        The peak (MiB) up to now, which the reset forgets.
    """
    before = peak_rss_mb()
    _malloc_trim()
    clear_peak_rss()
    return before


def clear_peak_rss():
    """Resets ``VmHWM`` to the current resident size (no ``malloc_trim``: safe in the middle
    of a run, e.g. between the engine's log windows)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass


def window_peak_rss_mb():
    """``VmHWM`` in MiB: peak resident memory since :func:`reset_peak_rss` (or start)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')


def make_result(workload, impl, times, items, tokens, flops, variant='', setup_seconds=0.0,
                warmup_seconds=0.0, rss_before_mb=float('nan'), setup_peak_mb=0.0, note='',
                **extra):
    """One row of the result table as a JSON-serialisable dict.

    Parameters
    ----------
    workload : benchmarks.spec.Workload
    impl : str
        Implementation name (``gluonbert``, ``gluonnlp``, ``hf-eager`` ...).
    times : list of float
        Seconds per timed repetition.
    items, tokens : int
        Sequences (or pairs) and tokens processed by one repetition (tokens: padded, as computed).
    flops : float
        Model FLOPs of one repetition (:mod:`benchmarks.flops`).
    variant : str
        Sub-case (GEMM size and operator).
    setup_seconds, warmup_seconds : float
        Model construction; untimed warm-up repetitions (includes compilation).
    rss_before_mb : float
        Resident memory after construction, before the first step.
    setup_peak_mb : float
        Peak before :func:`reset_peak_rss` was called (construction): ``step_peak_rss_mb`` is
        the peak over warm-up and timed steps, ``peak_rss_mb`` over the whole process.
    note : str
        Free text shown under the table.
    extra
        More JSON-serialisable fields.
    """
    median = statistics.median(times)
    best = min(times)
    row = {
        'workload': workload.name, 'impl': impl, 'variant': variant, 'status': 'ok',
        'times_s': [round(t, 5) for t in times], 'median_s': round(median, 5),
        'min_s': round(best, 5), 'items_per_rep': items, 'tokens_per_rep': tokens,
        'flops_per_rep': flops,
        'items_per_s_median': items / median if items else None,
        'items_per_s_best': items / best if items else None,
        'tokens_per_s_median': tokens / median if tokens else None,
        'gflops_median': flops / median / 1e9, 'gflops_best': flops / best / 1e9,
        'setup_s': round(setup_seconds, 2), 'warmup_s': round(warmup_seconds, 2),
        'rss_before_mb': round(rss_before_mb, 1),
        'peak_rss_mb': round(max(setup_peak_mb, peak_rss_mb()), 1),
        'step_peak_rss_mb': round(max(window_peak_rss_mb(), current_rss_mb()), 1),
        'note': note,
    }
    row.update(extra)
    return row
