"""Training: the engine and its two tasks, pretraining (MLM + NSP) and fine-tuning.

Modules (import them directly; nothing heavy is imported here), in reading order
-------------------------------------------------------------------------------
engine
    ``Engine.step``: one optimiser update, top to bottom (normalisers summed over workers,
    split over devices, forward/backward, all-reduce, clip, update); ``train``: the loop
    around it for every task (run directory, resume, log, end of epoch, checkpoints, signals).
pretrain, finetune
    The two tasks: each a model builder, resumable batches, a loss, end of epoch, outputs.
config
    ``OptimizerConfig``, ``DeviceConfig``, ``RunConfig`` (the engine's settings),
    ``PretrainConfig``, ``FinetuneConfig``.
optim
    BERT's Adam with decoupled weight decay, LAMB, warm-up + linear decay, global-norm clipping.
checkpoint, run_directory
    Atomic, verified, resumable checkpoints; one run per output directory.
metrics, progress, plot
    On-device running sums; tqdm bar + log file; loss curves as PNG.
"""
