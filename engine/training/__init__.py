"""Fine-tuning: configuration, data, the training loop and the detached jobs that run it.

`config` is `TrainingConfig`; `options` reads its fields' metadata into the options `tune`,
the Fine-tune form and its command line are built from; `progress` is the progress record a
job writes and its readers parse; `data` turns dataset rows into training examples; `steps`
batches and the loss; `checkpoint` saves and resumes; `loop` trains; `jobs` launches,
queues, cancels and resumes detached workers; `worker` is the process behind a job;
`slurm` submits jobs to Slurm with `sbatch`, whose workers read a `job_spec` and report
through `job_events` files that the front ends ingest (compute nodes never open SQLite);
`job_detail` reads one job in full for a detail view.

May import: `tunelab.store`, `engine.errors`, `engine.processes`, `engine.models`,
`engine.prompts`, `engine.generation`, `engine.evaluation`, `engine.data`.
"""
