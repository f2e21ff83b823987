"""Running sums of training statistics, kept on the devices.

During training nothing is copied to the host per step: each device adds its batch sums into
a small on-device vector (:class:`DeviceSums`), read once per logging interval.
"""
import numpy as np

__all__ = ['DeviceSums']


class DeviceSums:
    """Named running sums, one float32 vector per device, synchronised only on :meth:`read`.

    Parameters
    ----------
    names : sequence of str
        Names of the K sums (e.g. ``('mlm_loss', 'mlm_correct', 'mlm_count')``).
    contexts : list of mx.Context

    Examples
    --------
    >>> sums = DeviceSums(['loss', 'count'], [mx.cpu(0), mx.cpu(1)])    # doctest: +SKIP
    >>> sums.add(0, mx.nd.stack(loss_sum, count))  # (K,) on cpu(0)    # doctest: +SKIP
    >>> sums.read()                                # host sync, resets  # doctest: +SKIP
    {'loss': ..., 'count': ...}
    """

    def __init__(self, names, contexts):
        import mxnet as mx
        self.names = list(names)
        self._totals = [mx.nd.zeros((len(self.names),), ctx=ctx) for ctx in contexts]

    def add(self, device_index, values):
        """Adds a ``(K,)`` NDArray (on device ``device_index``) to that device's sums."""
        self._totals[device_index] += values.astype('float32', copy=False).reshape((-1,))

    def read(self, reset=True):
        """Sums over devices, copied to the host (one synchronisation).

        Outputs
        -------
        dict of str -> float
        """
        total = np.sum([t.asnumpy() for t in self._totals], axis=0)
        if reset:
            for t in self._totals:
                t[:] = 0
        return {name: float(v) for name, v in zip(self.names, total)}
