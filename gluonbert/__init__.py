"""gluonbert: the reference BERT for Apache MXNet Gluon."""
__version__ = '0.1.0'
