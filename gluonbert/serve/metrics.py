"""Scores of predictions against labels, on host arrays: accuracy and F1."""
import numpy as np

__all__ = ['accuracy', 'f1_score', 'classification_report']


def accuracy(predictions, labels):
    """Fraction of equal entries.

    Parameters
    ----------
    predictions, labels : (N,) int array-like

    Outputs
    -------
    float
        In [0, 1]; 0.0 for empty inputs.
    """
    predictions, labels = np.asarray(predictions).ravel(), np.asarray(labels).ravel()
    if predictions.shape != labels.shape:
        raise ValueError(f'accuracy: {predictions.shape[0]} predictions for '
                         f'{labels.shape[0]} labels')
    return float((predictions == labels).mean()) if labels.size else 0.0


def f1_score(predictions, labels, positive=1):
    """F1 of the ``positive`` class: ``2 tp / (2 tp + fp + fn)`` (0.0 when undefined).

    Parameters
    ----------
    predictions, labels : (N,) int array-like
    positive : int
        The class counted as positive (1 = paraphrase for MRPC).

    Outputs
    -------
    float
    """
    predictions, labels = np.asarray(predictions).ravel(), np.asarray(labels).ravel()
    tp = int(np.sum((predictions == positive) & (labels == positive)))
    fp = int(np.sum((predictions == positive) & (labels != positive)))
    fn = int(np.sum((predictions != positive) & (labels == positive)))
    return 2.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def classification_report(predictions, labels):
    """``{'accuracy': ..., 'f1': ..., 'count': N}`` for binary/multi-class predictions."""
    return {'accuracy': accuracy(predictions, labels), 'f1': f1_score(predictions, labels),
            'count': int(np.asarray(labels).size)}
