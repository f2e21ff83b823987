"""Training: pretraining (MLM + NSP), fine-tuning, prediction, data-parallel over devices.

Modules (import them directly; nothing heavy is imported here)
-------------------------------------------------------------
engine
    The training loop, once, for every task: devices and cluster, AMP, the one ``Trainer``
    factory, the sharded step, schedule, checkpoints and exact resume, one run per output
    directory, SIGINT/SIGTERM, progress, log, evaluation hook. Start reading here.
config
    ``OptimizerConfig``, ``DeviceConfig``, ``RunConfig`` (the engine's settings),
    ``PretrainConfig``, ``FinetuneConfig``.
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
pretrain, finetune
    The two tasks on the engine (model, batches, loss, metrics, outputs).
predict, backbone, tasks, demo
    ``gluonbert predict``, pretrained starting points, task files, ``gluonbert demo``.
arguments
    Their command-line arguments.
"""
