"""Progress reporting of a training run: a tqdm bar on the console and a plain log file.

Each logged record (a dict of numbers) becomes one line of ``train.log`` and of the console
(printed above the bar), and the bar's postfix shows the latest values.
"""
import logging
import os
import sys

from tqdm import tqdm

__all__ = ['TrainProgress', 'format_record']


def format_record(record):
    """``'step 100 | mlm_loss 6.9120 | lr 1.00e-04'``: short, aligned-enough text."""
    parts = []
    for key, value in record.items():
        if isinstance(value, float):
            text = f'{value:.2e}' if key == 'lr' or (value and abs(value) < 1e-3) else \
                f'{value:.4f}' if abs(value) < 1e4 else f'{value:.0f}'
        else:
            text = str(value)
        parts.append(f'{key} {text}')
    return ' | '.join(parts)


class TrainProgress:
    """Console bar plus log file (non-zero ranks: their own log file, no console).

    Parameters
    ----------
    log_path : str or None
        File the records are appended to (its directory is created); None: console only.
    total : int
        Total number of steps (bar length).
    initial : int
        Steps already done (a resumed run).
    desc : str
        Bar label.
    enabled : bool
        False on non-zero ranks: nothing is printed or written.
    bar : bool
        Show the progress bar (lines are printed and logged either way).
    console : bool
        Print lines on the console too (False: log file only, as on non-zero ranks).
    """

    def __init__(self, log_path, total, initial=0, desc='train', enabled=True, bar=True,
                 console=True):
        self.enabled = enabled
        self.console = console
        self.logger = logging.getLogger(f'gluonbert.train.{desc}.{id(self)}')
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self._handler = None
        if enabled and log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self._handler = logging.FileHandler(log_path, encoding='utf-8')
            self._handler.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
            self.logger.addHandler(self._handler)
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not (enabled and bar),
                        dynamic_ncols=True, file=sys.stderr, leave=True)

    def advance(self, steps=1):
        """Moves the bar by ``steps``."""
        self.bar.update(steps)

    def log(self, record, console=True):
        """Writes ``record`` to the log file and (above the bar) to the console."""
        if not self.enabled:
            return
        line = format_record(record)
        self.logger.info(line)
        if console and self.console:
            tqdm.write(line, file=sys.stderr)
        short = {k: v for k, v in record.items() if k in ('loss', 'mlm_loss', 'nsp_loss',
                                                           'accuracy', 'mlm_acc', 'nsp_acc')}
        if short:
            self.bar.set_postfix({k: f'{v:.3f}' for k, v in short.items()}, refresh=False)

    def message(self, text):
        """A free-form line (configuration, evaluation results) to file and console."""
        if not self.enabled:
            return
        self.logger.info(text)
        if self.console:
            tqdm.write(text, file=sys.stderr)

    def close(self):
        self.bar.close()
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
