"""Training: pretraining (MLM + NSP), fine-tuning, prediction, data-parallel over devices.

Modules (import them directly; nothing heavy is imported here)
-------------------------------------------------------------
config
    ``OptimizerConfig``, ``DeviceConfig``, ``PretrainConfig``, ``FinetuneConfig``.
devices
    ``--gpus``/``--cpus`` to contexts; the kvstore seam (rank, worker count).
optim
    BERT's Adam with decoupled weight decay, LAMB, warm-up + linear decay, global-norm clipping.
loop
    ``ShardedStep``: split_and_load, one ``record()``, all-reduce, clip, update, accumulation.
losses, metrics
    Per-shard MLM/NSP and classification losses; accuracy, F1, on-device running sums.
checkpoint
    Atomic, verified, resumable checkpoints (parameters, optimizer, data position, RNGs).
progress, plot
    tqdm bar + log file; loss curves as PNG.
pretrain, finetune, predict, backbone, tasks, demo
    The runs behind ``gluonbert pretrain|finetune|predict|demo``.
arguments
    Their command-line arguments.
"""
