"""The parts of an evaluation run between the request and the store.

`prepare` resolves and validates everything that needs no model; `render_jobs` renders each
row and checks it against the context window; `score_chunk` turns a chunk of rows into
scored outputs, from the response cache where it can. Kept apart from `run.py` so the
run loop stays readable.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunelab.engine.data.cases import (
    ASSERT_COLUMN,
    CASE_METRICS,
    Assertion,
    assertions_of,
    is_cases_dataset,
)
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.answers import RULE_SETTING, AnswerRule, parse_rule
from tunelab.engine.evaluation.assertions import Judge, check_case
from tunelab.engine.evaluation.metrics import (
    INVALID,
    Example,
    Metric,
    get_metric,
    normalize_label,
    resolve_metrics,
    score_example,
)
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.models.endpoint import is_endpoint
from tunelab.engine.prompts.calibration import Calibration, calibrated_prediction
from tunelab.engine.prompts.settings import VERSION_SECTIONS, GenerationSettings
from tunelab.store import (
    CachedResponse,
    Dataset,
    DatasetRow,
    Model,
    NewRunOutput,
    PromptVersion,
    Store,
)

CACHE_KEY_VERSION = 1
"""Bump when what a cache entry means changes, so old entries stop matching."""
BATCHES_PER_CHUNK = 4
"""A local model's generated rows are written every this many batches' worth of rows."""


@dataclass
class EvalPlan:
    """Everything an evaluation needs, resolved and validated, before a model is loaded."""

    version: PromptVersion
    model: Model
    dataset: Dataset
    split: str
    rows: list[DatasetRow]
    settings: GenerationSettings
    settings_dict: dict[str, Any]
    scoring: str
    metrics: list[Metric]
    cacheable: bool
    use_cache: bool
    row_limit: int | None
    sample_seed: int | None
    output_rule: AnswerRule | None = None
    """Reads the final answer out of each output: the prompt version's rule, else the dataset's."""
    reference_rule: AnswerRule | None = None
    """Reads the final answer out of each reference: the dataset's rule."""
    calibration: Calibration | None = None
    """The version's label-score calibration (likelihood scoring only)."""
    calibration_prior: list[float] | None = None
    """The prior divided out of each row's label distribution: the version's stored vector,
    or for a per-run batch calibration the mean over this run's rows once measured."""
    prescored: dict[str, tuple[CachedResponse, Timing]] = field(default_factory=dict)
    """Responses scored ahead of the run loop (to measure a per-run prior), by cache key."""
    cases: bool = False
    """The dataset is a test-case file: each row is scored by its own assertions."""
    case_judge: CaseJudge | None = None
    """Asks a judge assertion's rubric (only when some case has one)."""


@dataclass(frozen=True)
class Timing:
    """How long a freshly scored row took: its share of its batch, and the batch itself."""

    latency_ms: float
    batch_ms: float
    batch_rows: int


@dataclass(frozen=True)
class RowJob:
    """One dataset row with its rendered prompt and cache key."""

    row: DatasetRow
    prompt: str
    token_count: int
    reference: str | None
    cache_key: str
    messages: tuple[dict[str, str], ...] = ()
    """Chat mode on an endpoint model: the messages sent to its chat API."""


def _resolve_version(store: Store, prompt: str | PromptVersion) -> PromptVersion:
    if isinstance(prompt, PromptVersion):
        return prompt
    if not prompt:
        raise BadInputError("name a prompt: NAME, NAME@VERSION or NAME:LABEL")
    return store.get_prompt_version(prompt)


def resolve_split(dataset: Dataset, split: str | None) -> str:
    """The named split, or the only one; several and none named is bad input."""
    if split is not None:
        dataset.split(split)
        return split
    if len(dataset.splits) == 1:
        return dataset.splits[0].name
    raise BadInputError(
        f"dataset {dataset.name!r} has splits {', '.join(dataset.split_names)}; choose one "
        "with --split"
    )


def select_indices(row_count: int, limit: int | None, sample: int | None, seed: int) -> list[int]:
    """The row indices a run covers: the first N, N drawn with a seed, or all of them."""
    if sample is not None:
        if sample > row_count:
            raise BadInputError(f"cannot sample {sample} rows from a split of {row_count}")
        return sorted(random.Random(seed).sample(range(row_count), sample))
    return list(range(min(limit, row_count) if limit is not None else row_count))


def merged_settings(version: PromptVersion, overrides: dict[str, Any]) -> dict[str, Any]:
    """The prompt version's generation settings with the request's overrides on top."""
    base = {k: v for k, v in version.settings.items() if k not in VERSION_SECTIONS}
    return {**base, **overrides}


def prepare(store: Store, request: EvalRequest) -> EvalPlan:
    """Resolve and validate a request; raises bad input before anything is written."""
    version = _resolve_version(store, request.prompt)
    dataset = store.get_dataset(request.dataset)
    split = resolve_split(dataset, request.split)
    raw_settings = merged_settings(version, request.settings)
    settings = GenerationSettings.from_dict(raw_settings)
    settings_dict = settings.to_dict()
    if request.scoring == "likelihood" and (dataset.task != "classification" or not dataset.labels):
        raise BadInputError(
            f"likelihood scoring needs a classification dataset with labels; "
            f"{dataset.name!r} is a {dataset.task} dataset"
        )
    metric_names = list(request.metrics) or list(dataset.metrics)
    cases = is_cases_dataset(dataset)
    if cases:  # a case file's verdict is its assertions, whatever else is asked for
        metric_names = list(dict.fromkeys([*CASE_METRICS, *metric_names]))
    metrics = resolve_metrics(
        metric_names, dataset.task, dataset.labels, dataset.reference_column is not None
    )
    reference_rule = parse_rule(dataset.answer_rule) if dataset.answer_rule else None
    own_rule = version.settings.get(RULE_SETTING)
    output_rule = parse_rule(str(own_rule)) if own_rule else reference_rule
    if output_rule is not None and not any(m.name.startswith("final_answer") for m in metrics):
        # A rule means the final answer is what counts; its accuracy and failure rate show.
        metrics.append(get_metric("final_answer"))
    calibration = Calibration.from_settings(version.settings)
    if calibration is not None:
        if request.scoring != "likelihood":
            raise BadInputError(
                f"prompt {version.ref} carries a {calibration.method} calibration of label "
                "scores, which applies to likelihood scoring; use --scoring likelihood"
            )
        calibration.check_labels(dataset.labels)
    row_count = dataset.split(split).row_count
    indices = select_indices(row_count, request.limit, request.sample, request.seed)
    if not indices:
        raise BadInputError(f"split {split!r} of dataset {dataset.name!r} has no rows")
    rows = store.dataset_rows(dataset.name, split, indices=indices)
    check_variables(version, dataset, rows)
    model = resolve_model_arg(store, request.model)
    if is_endpoint(model):
        from tunelab.engine.generation.endpoint import check_settings
        from tunelab.engine.models.endpoint import EndpointConfig

        api = EndpointConfig.from_model(model).api
        if request.scoring == "likelihood" and api == "chat":
            raise BadInputError(
                f"likelihood scoring needs a completions API with log-probabilities; endpoint "
                f"model {model.name!r} is registered as chat-only: use --scoring generate"
            )
        if version.mode == "chat" and api == "completions":
            raise BadInputError(
                f"endpoint model {model.name!r} has only the completions API and prompt "
                f"{version.ref} is in chat mode: use a plain version (mode plain)"
            )
        if request.scoring == "likelihood" and version.mode != "plain":
            # Scoring goes through the completions API's echoed log-probabilities, on text.
            raise BadInputError(
                f"likelihood scoring on endpoint model {model.name!r} scores plain text; "
                f"prompt {version.ref} is in {version.mode} mode: use a plain version or "
                "--scoring generate"
            )
        check_settings(settings)
    # Greedy decoding is deterministic; sampling is only when the user fixed the seed.
    cacheable = request.scoring == "likelihood" or settings.greedy or "seed" in raw_settings
    return EvalPlan(
        version=version,
        model=model,
        dataset=dataset,
        split=split,
        rows=rows,
        settings=settings,
        settings_dict=settings_dict,
        scoring=request.scoring,
        metrics=metrics,
        cacheable=cacheable,
        use_cache=request.use_cache,
        row_limit=request.sample if request.sample is not None else request.limit,
        sample_seed=request.seed if request.sample is not None else None,
        output_rule=output_rule,
        reference_rule=reference_rule,
        calibration=calibration,
        calibration_prior=(
            list(calibration.vector) if calibration is not None and calibration.vector else None
        ),
        cases=cases,
        case_judge=_case_judge(store) if cases and _has_judge(rows) else None,
    )


CaseJudge = Callable[[Assertion, str, str, dict[str, Any]], tuple[float | None, str]]
"""(assertion, output, the rendered input, the case's variables) → (score, rationale)."""


def _has_judge(rows: Sequence[DatasetRow]) -> bool:
    return any(a.type == "judge" for row in rows for a in assertions_of(row.data))


def _case_judge(store: Store) -> CaseJudge:
    """A judge assertion's rubric asked through the judge (cached like any reply)."""

    def ask(
        assertion: Assertion, output: str, rendered: str, row: dict[str, Any]
    ) -> tuple[float | None, str]:
        from tunelab.engine.judge.asking import JudgeCase
        from tunelab.engine.judge.scoring import judge_one

        variables = {k: v for k, v in row.items() if k not in (ASSERT_COLUMN, "description")}
        assert assertion.rubric is not None  # parse_assertion requires one for judge
        judged = judge_one(
            store, assertion.rubric, JudgeCase(rendered, output, None, variables), assertion.model
        )
        return judged.score, judged.rationale or (judged.problem or "")

    return ask


def resolve_model_arg(store: Store, arg: str) -> Model:
    """A model by its workspace name, else registered from its argument (`builtin`, a path)."""
    from tunelab.engine.models.sources import resolve_model

    return resolve_model(store, arg)


def dataset_columns(dataset: Dataset, rows: Sequence[DatasetRow]) -> set[str]:
    """The variables a dataset's rows offer a template: its input and reference columns and
    the first row's keys."""
    known = set(dataset.input_columns)
    if dataset.reference_column:
        known.add(dataset.reference_column)
    if rows:
        known.update(rows[0].data)
    return known


def missing_variables(
    version: PromptVersion, dataset: Dataset, rows: Sequence[DatasetRow]
) -> list[str]:
    """The variables the version's template and system prompt read that the rows lack (sorted;
    [] when the pair fits). Raises BadInputError for a template that does not parse."""
    from tunelab.engine.prompts.templates import variables_of

    wanted = set(variables_of(version.template))
    if version.system:
        wanted.update(variables_of(version.system))
    return sorted(wanted - dataset_columns(dataset, rows))


def check_variables(version: PromptVersion, dataset: Dataset, rows: Sequence[DatasetRow]) -> None:
    """Refuse a template that uses a variable the dataset's rows do not have."""
    missing = missing_variables(version, dataset, rows)
    if missing:
        known = dataset_columns(dataset, rows)
        raise BadInputError(
            f"prompt {version.ref} uses {', '.join(missing)}, which dataset "
            f"{dataset.name!r} lacks; its columns are {', '.join(sorted(known)) or 'none'}"
        )


def load(store: Store, plan: EvalPlan) -> Any:
    """Load the plan's model (cached across calls by `models.load_model`).

    The scoring module is imported here too, so a broken install fails before a run exists.
    """
    from tunelab.engine.generation import threads

    if not is_endpoint(plan.model):
        threads.measure_ahead()  # the free cores, sampled while torch imports and weights load
    from tunelab.engine.generation import batched as generation  # noqa: F401 - imported early on purpose
    from tunelab.engine.generation import likelihood  # noqa: F401 - imported early on purpose
    from tunelab.engine.models.loading import load_model

    if is_endpoint(plan.model):
        from tunelab.engine.generation.endpoint import EndpointModel
        from tunelab.engine.models.endpoint import EndpointConfig

        return EndpointModel(EndpointConfig.from_model(plan.model), plan.model.name)
    return load_model(store, plan.model)


def cache_key(
    fingerprint: str, prompt: str, settings: dict[str, Any], scoring: str, labels: Sequence[str]
) -> str:
    """Key of one response: model (with adapter), rendered prompt, settings and seed.

    A greedy generation ignores the seed, so the seed is left out of its key; likelihood
    scoring depends only on the labels, not on generation settings.
    """
    if scoring == "likelihood":
        relevant: dict[str, Any] = {"labels": list(labels)}
    else:
        relevant = dict(settings)
        if float(relevant.get("temperature", 0)) == 0:
            relevant.pop("seed", None)
    payload = {
        "v": CACHE_KEY_VERSION,
        "model": fingerprint,
        "prompt": prompt,
        "scoring": scoring,
        "settings": relevant,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def render_jobs(store: Store, plan: EvalPlan, loaded: Any) -> list[RowJob]:
    """Render every row (with its few-shot examples) and check it fits the context window."""
    from tunelab.engine.prompts.templates import RowRenderer

    room = (
        _longest_label_tokens(plan, loaded)
        if plan.scoring == "likelihood"
        else plan.settings.max_new_tokens
    )
    # The same renderer as `tunelab generate` and the Playground, so a row reads the same.
    # An endpoint has no tokenizer here: chat mode sends the messages, its chat API templates.
    endpoint = is_endpoint(plan.model)
    local = None if endpoint else loaded
    renderer = RowRenderer(store, plan.version, local, plan.dataset, plan.split, room)
    reference = plan.dataset.reference_column
    jobs: list[RowJob] = []
    for row in plan.rows:
        rendered = renderer.render(row.data, row.idx, must_fit=True)
        ref_value = row.data.get(reference) if reference else None
        key = cache_key(
            loaded.fingerprint,
            rendered.text,
            plan.settings_dict,
            plan.scoring,
            plan.dataset.labels,
        )
        jobs.append(
            RowJob(
                row,
                rendered.text,
                rendered.token_count or 0,
                None if ref_value is None else str(ref_value),
                key,
                tuple(rendered.messages) if endpoint else (),
            )
        )
    return jobs


def _longest_label_tokens(plan: EvalPlan, loaded: Any) -> int:
    if plan.scoring != "likelihood" or is_endpoint(plan.model):
        return 0  # an endpoint's tokenizer is not here; the endpoint checks its own window
    return max(len(loaded.tokenizer.encode(" " + label)) for label in plan.dataset.labels)


def _prediction(plan: EvalPlan, output: str) -> tuple[str, bool | None]:
    """The answer scored for an output, and whether the answer rule found it (None: no rule)."""
    from tunelab.engine.prompts.templates import extract_answer

    if plan.output_rule is not None:
        found = plan.output_rule.extract(output)
        return ("" if found is None else found), found is not None
    answer = extract_answer(plan.version, output)
    if plan.dataset.task == "classification" and plan.dataset.labels:
        return normalize_label(answer, plan.dataset.labels), None
    return answer, None


def reference_answer(plan: EvalPlan, reference: str | None) -> str | None:
    """The reference's final answer under the dataset's rule; the whole reference when the
    rule finds none there (a reference that already is the answer), None without a rule."""
    if reference is None or plan.output_rule is None:
        return None
    if plan.reference_rule is None:
        return reference.strip()
    found = plan.reference_rule.extract(reference)
    return reference.strip() if found is None else found


def _scored(
    plan: EvalPlan,
    job: RowJob,
    output: str,
    prediction: str,
    timing: Timing | None,
    tokens_in: int,
    tokens_out: int,
    answer_found: bool | None = None,
) -> NewRunOutput:
    final = reference_answer(plan, job.reference)
    scored_reference = final if final is not None else job.reference
    scores = score_example(
        plan.metrics, Example(output, prediction, scored_reference, answer_found)
    )
    if plan.cases:
        judge = plan.case_judge
        row = job.row.data
        asked: Judge | None = (
            None if judge is None else (lambda a, out: judge(a, out, job.prompt, row))
        )
        case = check_case(assertions_of(row), output, plan.output_rule, asked)
        scores.update(case.scores())
    return NewRunOutput(
        row_idx=job.row.idx,
        row_id=job.row.id,
        rendered_prompt=job.prompt,
        output=output,
        prediction=prediction,
        reference=job.reference,
        scores=scores,
        latency_ms=timing.latency_ms if timing else 0.0,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cached=timing is None,
        batch_ms=timing.batch_ms if timing else None,
        batch_rows=timing.batch_rows if timing else None,
        reference_answer=final,
        answer_found=answer_found,
    )


def in_chunks(
    plan: EvalPlan, jobs: Sequence[RowJob], batch_size: int, samples: int = 1
) -> list[list[RowJob]]:
    """The rows in the chunks they are scored and written in.

    A local model's rows go longest first, so each batch holds rows of about one length (a
    batch pads to its longest prompt), and a generating chunk holds `BATCHES_PER_CHUNK`
    batches' worth, so rows waiting in it take the places of rows that finish (see
    `generation/decoding.py`). An endpoint's chunk is its batch, in the dataset's order.
    """
    rows, size = list(jobs), batch_size
    if not is_endpoint(plan.model):
        rows.sort(key=lambda job: job.token_count, reverse=True)
        if plan.scoring == "generate" and samples == 1:
            size = batch_size * BATCHES_PER_CHUNK
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def score_chunk(
    store: Store,
    plan: EvalPlan,
    loaded: Any,
    chunk: Sequence[RowJob],
    should_stop: Callable[[], bool],
    batch_size: int | None = None,
) -> tuple[list[NewRunOutput], int, bool]:
    """Score a chunk of rows, from the cache where possible; at most `batch_size` rows are
    generated at a time (None: as many as fit).

    Returns:
        (scored outputs, how many came from the cache, whether the whole chunk was scored).
    """
    use_cache = plan.cacheable and plan.use_cache
    ahead = plan.prescored
    prescored = {j.cache_key: ahead[j.cache_key] for j in chunk if j.cache_key in ahead}
    unscored = [j for j in chunk if j.cache_key not in prescored]
    hits = store.cached_responses(j.cache_key for j in unscored) if use_cache else {}
    missing = [j for j in unscored if j.cache_key not in hits]
    fresh: dict[str, tuple[CachedResponse, Timing]] = {}
    complete = True
    if missing:
        if plan.scoring == "likelihood":
            fresh = likelihood_responses(plan, loaded, missing)
        else:
            fresh, complete = _generate(plan, loaded, missing, should_stop, batch_size)
        if use_cache and fresh:
            store.cache_responses({k: v for k, (v, _) in fresh.items()})
    fresh.update(prescored)  # scored ahead by this run: fresh rows with their own timing
    outputs: list[NewRunOutput] = []
    from_cache = 0
    for job in chunk:
        timing: Timing | None
        if job.cache_key in hits:
            response, timing = hits[job.cache_key], None
            from_cache += 1
        elif job.cache_key in fresh:
            response, timing = fresh[job.cache_key]
        else:
            continue
        outputs.append(_from_response(plan, job, response, timing))
    return outputs, from_cache, complete


def _from_response(
    plan: EvalPlan, job: RowJob, response: CachedResponse, timing: Timing | None
) -> NewRunOutput:
    """A scored row from a response; `timing` is None for a cached one."""
    if plan.scoring == "likelihood":
        label_scores: dict[str, float] = json.loads(response.output)
        prediction = max(label_scores, key=lambda k: label_scores[k]) if label_scores else INVALID
        if label_scores and plan.calibration_prior is not None:
            labels = list(plan.dataset.labels)
            prediction = calibrated_prediction(label_scores, labels, plan.calibration_prior)
        return _scored(plan, job, prediction, prediction, timing, response.tokens_in, 0)
    prediction, answer_found = _prediction(plan, response.output)
    return _scored(
        plan,
        job,
        response.output,
        prediction,
        timing,
        response.tokens_in,
        response.tokens_out,
        answer_found,
    )


def _generate(
    plan: EvalPlan,
    loaded: Any,
    jobs: Sequence[RowJob],
    should_stop: Callable[[], bool],
    batch_size: int | None = None,
) -> tuple[dict[str, tuple[CachedResponse, Timing]], bool]:
    from tunelab.engine.generation.batched import generate_batch

    if is_endpoint(plan.model):
        from tunelab.engine.generation.endpoint import EndpointPrompt, generate_endpoint

        requests = [EndpointPrompt(j.prompt, list(j.messages)) for j in jobs]
        results = generate_endpoint(loaded, requests, plan.settings, should_stop=should_stop)
    else:
        results = generate_batch(
            loaded,
            [j.prompt for j in jobs],
            plan.settings,
            should_stop=should_stop,
            batch_limit=batch_size,
        )
    fresh: dict[str, tuple[CachedResponse, Timing]] = {}
    for job, result in zip(jobs, results, strict=True):
        if result.finish_reason == "cancelled":
            continue  # cut short by should_stop: not a real answer, so neither stored nor cached
        fresh[job.cache_key] = (
            CachedResponse(result.text, result.tokens_in, result.tokens_out),
            Timing(float(result.latency_ms), float(result.batch_ms), result.batch_rows),
        )
    return fresh, len(fresh) == len(jobs)


def likelihood_responses(
    plan: EvalPlan, loaded: Any, jobs: Sequence[RowJob]
) -> dict[str, tuple[CachedResponse, Timing]]:
    """Label log-likelihoods of each job's prompt, as cacheable responses by cache key."""
    from tunelab.engine.generation.likelihood import score_labels

    started = time.perf_counter()
    prompts, labels = [j.prompt for j in jobs], list(plan.dataset.labels)
    if is_endpoint(plan.model):
        from tunelab.engine.generation.endpoint_likelihood import score_labels_endpoint

        results = score_labels_endpoint(loaded, prompts, labels)
    else:
        results = score_labels(loaded, prompts, labels)
    batch_ms = (time.perf_counter() - started) * 1000
    timing = Timing(batch_ms / max(len(jobs), 1), batch_ms, len(jobs))
    fresh: dict[str, tuple[CachedResponse, Timing]] = {}
    for job, label_scores in zip(jobs, results, strict=True):
        blob = json.dumps({k: float(v) for k, v in dict(label_scores).items()})
        tokens_in = job.token_count or label_scores.tokens_in
        fresh[job.cache_key] = (CachedResponse(blob, tokens_in, 0), timing)
    return fresh
