"""Per-step cost of MXNet's distributed kvstore for a BERT's gradients.

Run as the workers of a job (it is a worker command):

    gluonbert launch -n 2 -s 1 -- python benchmarks/kvstore_overhead.py --model bert_2_128_2

Each worker builds the model, then times ``Trainer.allreduce_grads()`` (push every gradient
to the servers, pull the sums back) plus the two-number normaliser exchange of
:class:`gluonbert.dist.cluster.KVStoreSums`, over ``--repeat`` steps. Rank 0 prints a
table and writes JSON.
"""
import argparse
import json
import os
import time

import mxnet as mx
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='bert_2_128_2')
    parser.add_argument('--kvstore', default='dist_sync')
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--out', default='runs/benchmarks/kvstore_overhead.json')
    args = parser.parse_args()

    from gluonbert.model import BERTModel
    from gluonbert.dist.cluster import make_cluster
    cluster = make_cluster([mx.cpu()], args.kvstore)
    net = BERTModel(args.model)
    net.initialize(ctx=cluster.contexts)
    trainer = cluster.make_trainer(net.collect_params(), 'sgd')
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    for p in params:
        p.grad()[:] = 1.0
    trainer._init_kvstore()
    trainer.allreduce_grads()
    mx.nd.waitall()
    numbers = sum(int(np.prod(p.shape)) for p in params)
    grads, sums = [], []
    for _ in range(args.repeat):
        begin = time.perf_counter()
        trainer.allreduce_grads()
        mx.nd.waitall()
        grads.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        cluster.sum_over_workers([1.0, 2.0])
        sums.append(time.perf_counter() - begin)
    if cluster.is_main:
        row = {'model': args.model, 'kvstore': args.kvstore, 'workers': cluster.num_workers,
               'servers': int(os.environ.get('DMLC_NUM_SERVER', 0)),
               'gradient_floats': numbers, 'gradient_mb': numbers * 4 / 2 ** 20,
               'allreduce_ms_median': 1e3 * float(np.median(grads)),
               'allreduce_ms_min': 1e3 * float(np.min(grads)),
               'normaliser_ms_median': 1e3 * float(np.median(sums))}
        print('| model | workers | servers | gradient MB | allreduce ms (median / min) | '
              'normaliser exchange ms |')
        print('| --- | --- | --- | --- | --- | --- |')
        print(f"| {row['model']} | {row['workers']} | {row['servers']} | "
              f"{row['gradient_mb']:.1f} | {row['allreduce_ms_median']:.1f} / "
              f"{row['allreduce_ms_min']:.1f} | {row['normaliser_ms_median']:.2f} |")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + '.tmp', 'w', encoding='utf-8') as f:
            json.dump(row, f, indent=2)
        os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()
