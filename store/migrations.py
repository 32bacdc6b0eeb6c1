"""The tunelab schema, as one `sqlite_utils` migration set.

Every schema change is a new function appended here; never edit an applied one.
`docs/schema.md` documents the result and `tests/test_schema_docs.py` keeps the two in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlite_utils.migrations import Migrations

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATION_SET = "tunelab"
migrations = Migrations(MIGRATION_SET)

_INITIAL_SCHEMA = [
    """
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE prompt_versions (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        template TEXT NOT NULL,
        system TEXT NOT NULL DEFAULT '',
        examples TEXT NOT NULL DEFAULT '[]',
        mode TEXT NOT NULL DEFAULT 'chat' CHECK (mode IN ('plain', 'chat')),
        reasoning TEXT NOT NULL DEFAULT 'none' CHECK (reasoning IN ('none', 'cot')),
        settings TEXT NOT NULL DEFAULT '{}',
        parent_version_id INTEGER REFERENCES prompt_versions(id),
        message TEXT NOT NULL DEFAULT '',
        content_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (prompt_id, version)
    )""",
    """
    CREATE TABLE prompt_labels (
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES prompt_versions(id),
        updated_at TEXT NOT NULL,
        PRIMARY KEY (prompt_id, label)
    )""",
    """
    CREATE TABLE prompt_label_events (
        id INTEGER PRIMARY KEY,
        prompt_id INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        version_id INTEGER REFERENCES prompt_versions(id),
        previous_version_id INTEGER REFERENCES prompt_versions(id),
        moved_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        task TEXT NOT NULL DEFAULT 'generation' CHECK (task IN ('classification', 'generation')),
        input_columns TEXT NOT NULL DEFAULT '[]',
        reference_column TEXT,
        labels TEXT NOT NULL DEFAULT '[]',
        metrics TEXT NOT NULL DEFAULT '[]',
        card TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE dataset_splits (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        row_count INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        UNIQUE (dataset_id, name)
    )""",
    """
    CREATE TABLE dataset_rows (
        id INTEGER PRIMARY KEY,
        split_id INTEGER NOT NULL REFERENCES dataset_splits(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (split_id, idx)
    )""",
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('base', 'adapter', 'merged')),
        source TEXT NOT NULL CHECK (source IN ('builtin', 'hf_folder', 'gguf', 'hub', 'artifact')),
        path TEXT NOT NULL,
        base_model_id INTEGER REFERENCES models(id),
        method TEXT,
        training_dataset_id INTEGER REFERENCES datasets(id),
        training_dataset_fingerprint TEXT,
        prompt_version_id INTEGER REFERENCES prompt_versions(id),
        training_config TEXT NOT NULL DEFAULT '{}',
        job_id INTEGER REFERENCES jobs(id),
        step INTEGER,
        metrics TEXT NOT NULL DEFAULT '{}',
        is_best INTEGER NOT NULL DEFAULT 0,
        size_bytes INTEGER,
        fingerprint TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions(id),
        model_id INTEGER NOT NULL REFERENCES models(id),
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        split TEXT NOT NULL,
        row_limit INTEGER,
        sample_seed INTEGER,
        settings TEXT NOT NULL DEFAULT '{}',
        scoring TEXT NOT NULL DEFAULT 'generate' CHECK (scoring IN ('generate', 'likelihood')),
        metric_names TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
        rows_total INTEGER NOT NULL DEFAULT 0,
        metrics TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    """
    CREATE TABLE run_outputs (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        row_idx INTEGER NOT NULL,
        row_id INTEGER REFERENCES dataset_rows(id),
        rendered_prompt TEXT NOT NULL,
        output TEXT NOT NULL,
        prediction TEXT,
        reference TEXT,
        scores TEXT NOT NULL DEFAULT '{}',
        latency_ms REAL NOT NULL DEFAULT 0,
        tokens_in INTEGER NOT NULL DEFAULT 0,
        tokens_out INTEGER NOT NULL DEFAULT 0,
        cached INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (run_id, row_idx)
    )""",
    """
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY,
        run_output_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
        rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
        note TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    """
    CREATE TABLE run_metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value REAL,
        PRIMARY KEY (run_id, name)
    )""",
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'finetune',
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        method TEXT NOT NULL,
        base_model_id INTEGER REFERENCES models(id),
        dataset_id INTEGER REFERENCES datasets(id),
        prompt_version_id INTEGER REFERENCES prompt_versions(id),
        config TEXT NOT NULL DEFAULT '{}',
        progress TEXT NOT NULL DEFAULT '{}',
        pid INTEGER,
        host TEXT,
        gpus INTEGER NOT NULL DEFAULT 0,
        output_dir TEXT NOT NULL DEFAULT '',
        log_path TEXT NOT NULL DEFAULT '',
        error TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        heartbeat_at TEXT
    )""",
    """
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    )""",
    """
    CREATE TABLE job_metrics (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        at TEXT NOT NULL
    )""",
    """
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        output TEXT NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_prompt_versions_hash ON prompt_versions (prompt_id, content_hash)",
    "CREATE INDEX idx_runs_dataset ON runs (dataset_id, split)",
    "CREATE INDEX idx_job_metrics_job ON job_metrics (job_id, name, step)",
    "CREATE INDEX idx_job_events_job ON job_events (job_id)",
    "CREATE INDEX idx_models_base ON models (base_model_id)",
]


@migrations()
def m001_initial_schema(db: Database) -> None:
    """Create every table of the product: prompts, datasets, models, runs, jobs, cache."""
    for statement in _INITIAL_SCHEMA:
        db.execute(statement)


@migrations()
def m002_run_owner(db: Database) -> None:
    """Record which process runs an evaluation, so a killed run is seen as interrupted."""
    db.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")
    db.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN pid_start INTEGER")


@migrations()
def m003_measured_latency(db: Database) -> None:
    """Store what was measured: each row's batch wall time and size, and a per-request probe."""
    db.execute("ALTER TABLE run_outputs ADD COLUMN batch_ms REAL")
    db.execute("ALTER TABLE run_outputs ADD COLUMN batch_rows INTEGER")
    db.execute(
        """
        CREATE TABLE latency_probes (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            row_idx INTEGER NOT NULL,
            ttft_ms REAL,
            total_ms REAL NOT NULL,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, seq)
        )"""
    )


@migrations()
def m004_job_scheduler(db: Database) -> None:
    """Jobs run by a scheduler (Slurm): its job id and state, and the events of its remote
    worker already ingested from the job folder (one row per event, so ingesting twice is
    harmless)."""
    db.execute("ALTER TABLE jobs ADD COLUMN scheduler TEXT NOT NULL DEFAULT 'local'")
    db.execute("ALTER TABLE jobs ADD COLUMN scheduler_job_id TEXT")
    db.execute("ALTER TABLE jobs ADD COLUMN scheduler_state TEXT NOT NULL DEFAULT ''")
    db.execute(
        """
        CREATE TABLE job_ingested_events (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ingested_at TEXT NOT NULL,
            PRIMARY KEY (job_id, source, seq)
        )"""
    )


@migrations()
def m005_final_answers(db: Database) -> None:
    """Answer rules on datasets, and each row's extracted final answers, so a wrong score
    shows whether the answer was wrong or its extraction failed."""
    db.execute("ALTER TABLE datasets ADD COLUMN answer_rule TEXT")
    db.execute("ALTER TABLE run_outputs ADD COLUMN reference_answer TEXT")
    db.execute("ALTER TABLE run_outputs ADD COLUMN answer_found INTEGER")


@migrations()
def m006_feedback(db: Database) -> None:
    """Corrections (the output that should have been produced, versioned per output), blind
    A/B preferences between two runs' outputs of one row, and the lineage of datasets
    exported from them, so human feedback becomes training data that shows its origin."""
    db.execute(
        """
        CREATE TABLE corrections (
            id INTEGER PRIMARY KEY,
            run_output_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            text TEXT NOT NULL,
            author TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (run_output_id, version)
        )"""
    )
    db.execute(
        """
        CREATE TABLE preferences (
            id INTEGER PRIMARY KEY,
            output_a_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            output_b_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie')),
            author TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE dataset_lineage (
            dataset_id INTEGER PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
            lineage TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )


_MODEL_CHECKS_WIDENED = (
    ("'adapter', 'merged'))", "'adapter', 'merged', 'endpoint'))"),
    ("'hub', 'artifact'))", "'hub', 'artifact', 'openai'))"),
)


@migrations()
def m007_endpoint_models(db: Database) -> None:
    """Models served by an OpenAI-compatible API: kind `endpoint`, source `openai`.

    The CHECK constraints on `models.kind` and `models.source` are widened in place through
    `writable_schema`, the procedure SQLite documents for constraint changes that leave the
    stored rows valid (every existing row satisfies the wider list). A table rebuild would
    drop `models` under the foreign keys of runs and jobs, which cannot be switched off inside
    the migration's transaction.
    """
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'models'")
    current = str(sql.fetchone()[0])
    widened = current
    for old, new in _MODEL_CHECKS_WIDENED:
        if widened.count(old) != 1:
            raise RuntimeError(f"models table has an unexpected CHECK constraint: {current}")
        widened = widened.replace(old, new)
    version = int(db.execute("PRAGMA schema_version").fetchone()[0])
    db.execute("PRAGMA writable_schema = ON")
    try:
        db.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'models'", [widened]
        )
        db.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise RuntimeError(f"integrity check failed after widening models: {check}")


@migrations()
def m008_samples(db: Database) -> None:
    """Self-consistency runs: how many samples each row gets, and samples 2..N beside the
    row's output (`run_outputs` keeps the first sample, so every reader of outputs still
    sees one output per row)."""
    db.execute("ALTER TABLE runs ADD COLUMN samples INTEGER NOT NULL DEFAULT 1")
    db.execute(
        """
        CREATE TABLE run_samples (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            row_idx INTEGER NOT NULL,
            sample_idx INTEGER NOT NULL CHECK (sample_idx >= 1),
            output TEXT NOT NULL,
            prediction TEXT,
            answer_found INTEGER,
            scores TEXT NOT NULL DEFAULT '{}',
            latency_ms REAL NOT NULL DEFAULT 0,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            batch_ms REAL,
            batch_rows INTEGER,
            created_at TEXT NOT NULL,
            UNIQUE (run_id, row_idx, sample_idx)
        )"""
    )


@migrations()
def m009_judge(db: Database) -> None:
    """LLM judge runs: a rubric applied by a workspace model to one run's outputs (a score
    and rationale per output, unparseable replies kept as such) or to two runs' outputs of
    the same rows (a verdict per row from two passes with the positions swapped)."""
    db.execute(
        """
        CREATE TABLE judge_runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('score', 'pair')),
            rubric_version_id INTEGER NOT NULL REFERENCES prompt_versions(id),
            judge_model_id INTEGER NOT NULL REFERENCES models(id),
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            run_b_id INTEGER REFERENCES runs(id) ON DELETE CASCADE,
            scale_min INTEGER,
            scale_max INTEGER,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
            summary TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE judgements (
            id INTEGER PRIMARY KEY,
            judge_run_id INTEGER NOT NULL REFERENCES judge_runs(id) ON DELETE CASCADE,
            run_output_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            score INTEGER,
            rationale TEXT NOT NULL DEFAULT '',
            problem TEXT,
            raw TEXT NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (judge_run_id, run_output_id)
        )"""
    )
    db.execute(
        """
        CREATE TABLE pair_verdicts (
            id INTEGER PRIMARY KEY,
            judge_run_id INTEGER NOT NULL REFERENCES judge_runs(id) ON DELETE CASCADE,
            output_a_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            output_b_id INTEGER NOT NULL REFERENCES run_outputs(id) ON DELETE CASCADE,
            a_first TEXT CHECK (a_first IN ('a', 'b')),
            b_first TEXT CHECK (b_first IN ('a', 'b')),
            verdict TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie', 'unparsed')),
            raw_a_first TEXT NOT NULL,
            raw_b_first TEXT NOT NULL,
            cached INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (judge_run_id, output_a_id)
        )"""
    )
    db.execute("CREATE INDEX idx_judgements_output ON judgements (run_output_id)")
    db.execute("CREATE INDEX idx_judge_runs_run ON judge_runs (run_id)")


@migrations()
def m010_feedback_authors(db: Database) -> None:
    """Who gave each rating, as corrections and preferences already record: feedback that
    becomes training data shows whose judgement it was. Older ratings read 'unknown'."""
    db.execute("ALTER TABLE ratings ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown'")


@migrations()
def m011_sweeps(db: Database) -> None:
    """Hyperparameter sweeps and their trials (each trial one fine-tuning job), and movable
    model labels, so a sweep's best checkpoint has a name `compare` and `eval` accept."""
    db.execute(
        """
        CREATE TABLE sweeps (
            id INTEGER PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
            method TEXT NOT NULL,
            base_model_id INTEGER NOT NULL REFERENCES models(id),
            dataset_id INTEGER NOT NULL REFERENCES datasets(id),
            prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions(id),
            space TEXT NOT NULL,
            metric TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('maximize', 'minimize')),
            n_trials INTEGER NOT NULL,
            parallel INTEGER NOT NULL,
            pruner TEXT NOT NULL,
            seed INTEGER NOT NULL,
            scheduler TEXT NOT NULL DEFAULT 'local',
            slurm TEXT NOT NULL DEFAULT '{}',
            config TEXT NOT NULL,
            study_path TEXT NOT NULL,
            log_path TEXT NOT NULL DEFAULT '',
            pid INTEGER,
            host TEXT,
            worker TEXT NOT NULL DEFAULT '{}',
            best_trial INTEGER,
            best_model_id INTEGER REFERENCES models(id) ON DELETE SET NULL,
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE sweep_trials (
            sweep_id INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'complete', 'pruned', 'failed')),
            value REAL,
            pruned_at_step INTEGER,
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            PRIMARY KEY (sweep_id, number)
        )"""
    )
    db.execute(
        """
        CREATE TABLE model_labels (
            label TEXT PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            set_at TEXT NOT NULL
        )"""
    )


@migrations()
def m012_curves(db: Database) -> None:
    """Data-efficiency curves: one row per curve with its settings and prompt side, and one
    per training-set size and repeat linking its seed, subset, job and evaluation run."""
    db.execute(
        """
        CREATE TABLE curves (
            id INTEGER PRIMARY KEY,
            base_model_id INTEGER NOT NULL REFERENCES models(id),
            dataset_id INTEGER NOT NULL REFERENCES datasets(id),
            prompt_version_id INTEGER NOT NULL REFERENCES prompt_versions(id),
            method TEXT NOT NULL,
            train_split TEXT NOT NULL,
            eval_split TEXT NOT NULL,
            eval_limit INTEGER,
            metric TEXT NOT NULL,
            seed INTEGER NOT NULL,
            repeats INTEGER NOT NULL,
            confidence REAL NOT NULL DEFAULT 0.95,
            config TEXT NOT NULL,
            launch TEXT NOT NULL DEFAULT '{}',
            prompt_run_id INTEGER REFERENCES runs(id),
            prompt_run_source TEXT NOT NULL
                CHECK (prompt_run_source IN ('given', 'best', 'evaluated')),
            driver TEXT NOT NULL DEFAULT '{}',
            log_path TEXT NOT NULL DEFAULT '',
            error TEXT,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """
        CREATE TABLE curve_points (
            id INTEGER PRIMARY KEY,
            curve_id INTEGER NOT NULL REFERENCES curves(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            repeat INTEGER NOT NULL,
            seed INTEGER NOT NULL,
            subset_dataset_id INTEGER NOT NULL REFERENCES datasets(id),
            subset_split TEXT NOT NULL,
            job_id INTEGER REFERENCES jobs(id),
            run_id INTEGER REFERENCES runs(id),
            device TEXT,
            train_seconds REAL,
            train_cost REAL,
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            UNIQUE (curve_id, size, repeat)
        )"""
    )


@migrations()
def m013_robustness(db: Database) -> None:
    """Robustness suites: a clean run re-run on perturbed copies of its rows (each a derived
    dataset with lineage) or with small changes to its prompt (each a child version), so
    every perturbation's paired drop can be recomputed from what is stored."""
    db.execute(
        """
        CREATE TABLE robustness_suites (
            id INTEGER PRIMARY KEY,
            clean_run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            seed INTEGER NOT NULL,
            metric TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL
                CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
            error TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )"""
    )
    db.execute(
        """
        CREATE TABLE robustness_items (
            id INTEGER PRIMARY KEY,
            suite_id INTEGER NOT NULL REFERENCES robustness_suites(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            perturbation TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('input', 'prompt')),
            detail TEXT NOT NULL DEFAULT '',
            dataset_id INTEGER REFERENCES datasets(id) ON DELETE SET NULL,
            prompt_version_id INTEGER REFERENCES prompt_versions(id),
            run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
            UNIQUE (suite_id, position)
        )"""
    )


@migrations()
def m017_run_device(db: Database) -> None:
    """Which device a run's model ran on (cpu, cuda, mps; NULL for endpoint models and runs
    from before), so its throughput is priced at the CPU-hour or the GPU-hour rate."""
    db.execute("ALTER TABLE runs ADD COLUMN device TEXT")


KNOWN_MIGRATIONS = frozenset(m.name for m in migrations._migrations)
