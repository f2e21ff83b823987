"""Loss curves as a PNG (matplotlib's Agg backend: no display needed)."""
import os

__all__ = ['plot_curves']


def plot_curves(history, path, keys, x_key='step', title=None):
    """Draws one panel per key of ``keys`` against ``x_key``, saved atomically as PNG.

    Parameters
    ----------
    history : list of dict
        Logged records, e.g. ``{'step': 100, 'mlm_loss': 6.1, 'nsp_loss': 0.69}``.
    path : str
        Output ``.png`` (written to a temporary file, then renamed).
    keys : sequence of str
        Record keys to plot (records without a key are skipped for that panel).
    x_key : str
        The x axis.
    title : str or None

    Outputs
    -------
    str
        ``path``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from ..data.fileio import atomic_write
    keys = list(keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r[x_key], r[key]) for r in history if key in r and x_key in r]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker='.' if len(xs) < 50 else None)
        ax.set_xlabel(x_key)
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100)
    plt.close(fig)
    return path
