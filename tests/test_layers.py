"""The package's import graph: each room imports only from the rooms below it, and no module
imports itself back through others (function-level imports included).

Rooms, bottom to top: ``errors``/``platform``/``utils``; ``data``; ``runs``/``kernels``;
``model``; ``dist``; ``serve``; ``train``; ``cli``. ``gluonbert/__init__.py`` only re-exports
names lazily and is left out.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'gluonbert'
RANK = {'errors': 0, 'platform': 0, 'utils': 0, 'data': 1, 'runs': 2, 'kernels': 2, 'model': 3,
        'dist': 4, 'serve': 5, 'train': 6, 'cli': 7}


def import_graph(package):
    """``{module: set of gluonbert modules it imports anywhere in its code}``."""
    paths = {}
    for path in package.rglob('*.py'):
        parts = list(path.relative_to(package.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        paths['.'.join(parts)] = path
    graph = {}
    for name, path in paths.items():
        if name == package.name:
            continue
        here = name.split('.') if path.name == '__init__.py' else name.split('.')[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                source = '.'.join(base + ([node.module] if node.module else []))
                for alias in node.names:      # `from . import x` imports module x
                    module = f'{source}.{alias.name}'
                    targets.add(module if module in paths else source)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def _room(module):
    return module.split('.')[1]


def upward_imports(graph):
    return sorted(f'{module} imports {target}' for module, targets in graph.items()
                  for target in targets if RANK[_room(target)] > RANK[_room(module)])


def cycles(graph):
    """One cycle (as a path) per back edge of a depth-first search."""
    found, state = [], {}

    def visit(node, stack):
        state[node] = 'open'
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 'open':
                found.append(' -> '.join(stack[stack.index(target):] + [target]))
            elif target not in state and target in graph:
                visit(target, stack + [target])
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_is_in_a_room():
    assert {_room(m) for m in import_graph(PACKAGE)} <= set(RANK)


def test_no_import_from_a_room_above():
    assert not upward_imports(import_graph(PACKAGE)), '\n'.join(upward_imports(
        import_graph(PACKAGE)))


def test_no_import_cycle():
    assert not cycles(import_graph(PACKAGE)), '\n'.join(cycles(import_graph(PACKAGE)))


def test_the_checks_see_a_violation(tmp_path):
    """A low room importing a high one inside a function, and the cycle it closes."""
    root = tmp_path / 'gluonbert'
    for room in ('data', 'train'):
        (root / room).mkdir(parents=True)
        (root / room / '__init__.py').write_text('')
    (root / '__init__.py').write_text('')
    (root / 'data' / 'a.py').write_text('def f():\n    from ..train import b\n')
    (root / 'train' / 'b.py').write_text('from ..data import a\n')
    graph = import_graph(root)
    assert upward_imports(graph) == ['gluonbert.data.a imports gluonbert.train.b']
    assert cycles(graph) == ['gluonbert.data.a -> gluonbert.train.b -> gluonbert.data.a']


def private_imports(folder):
    """``file: name`` for every private (``_``-prefixed) gluonbert name imported in
    ``folder``'s Python files."""
    found = []
    for path in sorted(folder.rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('gluonbert'):
                found += [f'{path.name}: {node.module}.{a.name}' for a in node.names
                          if any(part.startswith('_')
                                 for part in node.module.split('.') + [a.name])]
    return found


def test_benchmarks_use_public_names_and_the_engine_step():
    """The benchmarks time what users run: the engine's one public step, and no private name
    of gluonbert (a private name is free to change under them)."""
    benchmarks = PACKAGE.parent / 'benchmarks'
    assert private_imports(benchmarks) == []
    source = (benchmarks / 'impl_gluonbert.py').read_text(encoding='utf-8')
    assert 'from gluonbert.train.engine import Engine' in source and '.step(' in source


def test_the_private_name_check_sees_one(tmp_path):
    (tmp_path / 'bench.py').write_text('from gluonbert.train.engine import _Run, train\n')
    assert private_imports(tmp_path) == ['bench.py: gluonbert.train.engine._Run']
