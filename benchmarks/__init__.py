"""Side-by-side speed benchmarks: gluonbert vs GluonNLP 0.10 vs HuggingFace transformers.

Run ``python benchmarks/run.py [--quick]`` from the repository root; see ``benchmarks/README.md``.
Every (workload, implementation) pair runs in its own subprocess (:mod:`benchmarks.worker`) so
that peak memory is measured per framework and thread settings are applied before import.
"""
