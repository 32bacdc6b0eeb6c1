"""Prompt searches on Slurm: `tunelab optimize ... --on slurm`.

The request is checked here exactly as a local search's (bad input stops before anything is
stored); then a job of kind `optimize` holds it, its spec (`training/search_spec.py`) is
written into the job folder and the batch script is `sbatch`ed. The worker on the compute
node (`remote_worker`) reports through file events, which every refresh of Slurm jobs
ingests (`training/search_events.py`): candidates arrive as versions and runs as they finish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.plan import resolve_model_arg
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.engine.optimize.job import KIND, METHOD, request_to_config
from tunelab.engine.optimize.search import check_request
from tunelab.engine.training import slurm
from tunelab.engine.training.job_events import job_dir, stop_file
from tunelab.engine.training.search_spec import SEARCH_WORKER_MODULE, write_search_spec

if TYPE_CHECKING:
    from tunelab.engine.optimize.search import OptimizeRequest
    from tunelab.store import Job, Store, Workspace


def submit_search(
    workspace: Workspace, store: Store, request: OptimizeRequest, options: slurm.SlurmOptions
) -> Job:
    """Check a search, create its job, write the spec and submit it to Slurm.

    Returns:
        the job (kind `optimize`, scheduler `slurm`) with its Slurm job id.

    Raises:
        BadInputError: the search cannot run, or not remotely (nothing is stored then).
        EngineError: sbatch refused the job (the job is failed with why).
    """
    seed, dataset, _, _, _ = check_request(store, request)
    model = resolve_model_arg(store, request.model)
    models = [model]
    if request.propose_instructions:
        models.append(resolve_model_arg(store, request.proposer))
    for record in models:
        if is_endpoint(record):
            raise BadInputError(
                f"cannot search on Slurm: model {record.name!r} is an endpoint; search from "
                "this machine (drop --on slurm)"
            )
    if options.nodes != 1:
        raise BadInputError("a prompt search on Slurm runs on one node; drop --nodes")
    slurm.check_shared_fs(workspace.root, options.allow_local_fs)
    workspace.ensure_dirs()
    job = store.create_job(
        METHOD, request_to_config(request), model.id, dataset.id, seed.id,
        gpus=options.gpus_per_node, kind=KIND, scheduler="slurm",
    )  # fmt: skip
    folder = job_dir(workspace, job.id)
    job = store.update_job(job.id, output_dir=str(folder),
                           log_path=str(folder / slurm.LOG_FILE))  # fmt: skip
    spec = write_search_spec(store, job, folder, stop_file(workspace, job.id), options.to_dict())
    return slurm.sbatch(store, job, folder, options, [SEARCH_WORKER_MODULE, str(spec)])
