"""The ``gluonbert`` command line: argument parsing only.

Every sub-command calls a function of the package that a Python user can call directly; no
logic lives here. Add a sub-command as one ``_add_<name>(sub)`` function and register it in
``build_parser``.
"""
import argparse
import sys

__all__ = ['main', 'build_parser']


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gluonbert', description='BERT for Apache MXNet Gluon: weights, data, training.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS = []


def _command(func):
    """Registers a ``_add_<name>(subparsers)`` function as a sub-command."""
    _COMMANDS.append(func)
    return func


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import GluonBERTError
    try:
        result = args.run(args)
    except GluonBERTError as err:
        print(f'gluonbert {args.command}: error: {err}', file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == '__main__':
    sys.exit(main())
