"""Hardening: the database under faults. A damaged page, a read-only database or folder, a
full disk, backups (by hand and before each schema migration), two resumes of one run
started at the same moment, and a stderr free of library noise. docs/reliability.md has the
table these tests prove.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.tune_helpers import wait_for
from tunelab.store import (
    CorruptDatabaseError,
    DatabaseGuard,
    DiskFullError,
    NewDataset,
    NewModel,
    NewRunOutput,
    NewSplit,
    PromptContent,
    ReadOnlyDatabaseError,
    RunClaimedError,
    Store,
    Workspace,
    init_workspace,
)
from tunelab.store.migrations import migrations

ROWS = [{"text": f"row {i} " + "x" * 300, "label": ["irony", "non_irony"][i % 2]}
        for i in range(120)]  # fmt: skip
DISCARD_ADVICE = ("move it aside", "tunelab init")


def _fill(workspace: Workspace, runs: int = 2, finish: str = "succeeded") -> None:
    """A dataset, a prompt, a model and `runs` runs of 120 scored rows each."""
    with workspace.open_store() as store:
        store.add_dataset(
            NewDataset(
                name="irony", source="test", fingerprint="fp", task="classification",
                splits=[NewSplit("test", ROWS, "fp-test")], input_columns=["text"],
                reference_column="label", labels=["irony", "non_irony"], metrics=["accuracy"],
            )
        )  # fmt: skip
        store.save_prompt_version("irony", PromptContent(template="{{ text }}"))
        model = store.add_model(NewModel("builtin", "base", "builtin", "builtin"))
        ids = (store.get_prompt_version("irony").id, model.id, store.get_dataset("irony").id)
        for _ in range(runs):
            run = store.create_run(*ids, "test", rows_total=len(ROWS), settings={},
                                   metric_names=["accuracy"])  # fmt: skip
            outputs = [
                NewRunOutput(row_idx=i, rendered_prompt="p" * 200, output="irony",
                             prediction="irony", reference=row["label"],
                             scores={"accuracy": float(row["label"] == "irony")})
                for i, row in enumerate(ROWS)
            ]  # fmt: skip
            store.add_run_outputs(run.id, outputs)
            store.finish_run(run.id, finish, {"accuracy": 0.5})
    _checkpoint(workspace.db_path)


def _checkpoint(db_path: Path) -> None:
    """Fold the WAL into the file and drop it, as the last connection closing does."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def _corrupt_a_run_outputs_page(db_path: Path) -> int:
    """Overwrite the header of the middle leaf page of run_outputs with a few garbage bytes."""
    conn = sqlite3.connect(db_path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = [r[0] for r in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'run_outputs' AND pagetype = 'leaf' "
        "ORDER BY pageno")]  # fmt: skip
    conn.close()
    page = pages[len(pages) // 2]
    with open(db_path, "r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(b"\xde\xad\xbe\xef" * 4)
    return page


def _state(db_path: Path) -> tuple[str, int]:
    """The file's digest and the WAL's size: a write changes one of them."""
    wal = Path(f"{db_path}-wal")
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    return digest, wal.stat().st_size if wal.exists() else 0


def _one_line_error(result: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_damaged_page_gives_one_line_and_stops_every_write(workspace: Workspace) -> None:
    _fill(workspace)
    _corrupt_a_run_outputs_page(workspace.db_path)
    template = workspace.root / "t.j2"
    template.write_text("{{ text }}")
    before = _state(workspace.db_path)
    for args in (["run", "list"], ["run", "show", "2"], ["compare", "1", "2"]):
        line = _one_line_error(run_cli(*args, workspace=workspace))
        assert f"{workspace.db_path} is damaged (" in line
        assert "tunelab stopped writing to it" in line and ".recover" in line, line
        assert not any(advice in line for advice in DISCARD_ADVICE), line
        assert _state(workspace.db_path) == before, args
    # Later processes remember the damage: a write that would not touch the bad page is
    # refused too, at open, before anything is written, with how to recover.
    for args in (["run", "rate", "5", "3"], ["prompt", "new", "p2", "--template-file",
                                              str(template)]):  # fmt: skip
        line = _one_line_error(run_cli(*args, workspace=workspace))
        assert f"{workspace.db_path} is damaged (" in line and "stopped writing" in line, line
        assert _state(workspace.db_path) == before, args


def test_damage_is_found_at_open_after_a_run_whose_process_died(workspace: Workspace) -> None:
    """The eval that was writing died; before anything else writes, every page is checked."""
    _fill(workspace, runs=2, finish="interrupted")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    conn = sqlite3.connect(workspace.db_path)
    conn.execute("UPDATE runs SET status = 'running', pid = ? WHERE id = 2", [gone.pid])
    conn.commit()
    conn.close()
    _checkpoint(workspace.db_path)
    _corrupt_a_run_outputs_page(workspace.db_path)
    before = _state(workspace.db_path)
    # eval --resume would rewrite run 2's status first (and then its rows): refused at open.
    line = _one_line_error(run_cli("eval", "--resume", "2", workspace=workspace))
    assert "failed its integrity check after run 2 (running) ended uncleanly" in line, line
    assert "stopped writing" in line and ".recover" in line
    assert _state(workspace.db_path) == before
    with pytest.raises(CorruptDatabaseError, match="is damaged"):
        Store(workspace.db_path)
    assert _state(workspace.db_path) == before


def test_a_sound_database_after_an_unclean_end_is_checked_once(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(workspace, runs=1, finish="interrupted")
    checks: list[list[str]] = []
    real = Store.quick_check

    def counting(self: Store) -> list[str]:
        checks.append(real(self))
        return checks[-1]

    monkeypatch.setattr(Store, "quick_check", counting)
    for _ in range(2):
        with Store(workspace.db_path) as store:
            store.save_prompt_version("irony", PromptContent(template="v{{ text }}"))
            assert store.get_prompt_version("irony").version >= 2
    assert checks == [[]]  # checked, found sound, not checked again for the same run


def _unprivileged_prefix(probe_dir: Path) -> list[str]:
    """A command prefix under which file permissions apply to us (root ignores them)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: chmod cannot make a file read-only")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]
    probe_dir.mkdir()
    probe_dir.chmod(0o500)
    check = subprocess.run([*prefix, sys.executable, "-c",
                            f"open({str(probe_dir / 'x')!r}, 'w')"],
                           capture_output=True)  # fmt: skip
    probe_dir.chmod(0o700)
    if check.returncode == 0:
        pytest.skip("this machine lets us write into a read-only folder (capabilities)")
    return prefix


def _run_as(
    prefix: Sequence[str], workspace: Workspace, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TUNELAB_WORKSPACE": str(workspace.root)}
    return subprocess.run([*prefix, sys.executable, "-m", "tunelab", *args],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def test_a_read_only_folder_and_a_read_only_database_are_named_as_such(
    workspace: Workspace, tmp_path: Path
) -> None:
    prefix = _unprivileged_prefix(tmp_path / "probe")
    _fill(workspace, runs=1)
    template = tmp_path / "t.j2"
    template.write_text("{{ text }}")
    new_prompt = ["prompt", "new", "p2", "--template-file", str(template)]
    before = _state(workspace.db_path)

    workspace.dir.chmod(0o500)  # the folder: SQLite cannot create the WAL beside the file
    try:
        for args in (["prompt", "list"], new_prompt):
            line = _one_line_error(_run_as(prefix, workspace, *args))
            assert f"the folder {workspace.dir} is read-only" in line, line
            assert f"chmod u+w {workspace.dir}" in line
            assert not any(advice in line for advice in DISCARD_ADVICE), line
    finally:
        workspace.dir.chmod(0o700)
    assert _state(workspace.db_path) == before

    workspace.db_path.chmod(0o400)  # the file: reads work, writes say why not
    try:
        listed = _run_as(prefix, workspace, "prompt", "list")
        assert listed.returncode == 0 and "irony" in listed.stdout, listed.stderr
        line = _one_line_error(_run_as(prefix, workspace, *new_prompt))
        assert f"{workspace.db_path} is read-only" in line and "untouched" in line, line
        assert f"chmod u+w {workspace.db_path}" in line
        assert not any(advice in line for advice in DISCARD_ADVICE), line
        assert oct(workspace.db_path.stat().st_mode & 0o777) == "0o400"  # left as set
    finally:
        workspace.db_path.chmod(0o600)
    assert _state(workspace.db_path)[0] == before[0]


# Makes SQLite's own "database or disk is full" happen on the next growth of tunelab.db:
# the connection may not add pages past the ones the file has (PRAGMA max_page_count).
FULL_DISK = """
import sqlite3
_connect = sqlite3.connect
def connect(database, *args, **kwargs):
    conn = _connect(database, *args, **kwargs)
    if str(database).endswith("tunelab.db"):
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
    return conn
sqlite3.connect = connect
"""


def test_a_full_disk_is_called_full_and_loses_nothing(workspace: Workspace, tmp_path: Path) -> None:
    _fill(workspace, runs=1)
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(FULL_DISK)
    big = tmp_path / "big.j2"
    big.write_text("{{ text }}" + "long instructions " * 40_000)
    before = _state(workspace.db_path)
    result = run_cli("prompt", "new", "big", "--template-file", str(big), workspace=workspace,
                     env={"PYTHONPATH": str(guard)})  # fmt: skip
    line = _one_line_error(result)
    assert f"the disk holding {workspace.db_path} is full (database or disk is full)" in line
    assert "rolled back" in line and "free some space" in line, line
    assert not any(advice in line for advice in DISCARD_ADVICE), line
    assert _state(workspace.db_path)[0] == before[0]
    listed = run_cli("prompt", "list", "--json", workspace=workspace)
    assert listed.returncode == 0 and '"big"' not in listed.stdout
    conn = sqlite3.connect(workspace.db_path)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()


# Runs in a private mount namespace: a 2 MB tmpfs holding a copy of the workspace, filled
# to the last byte, then the real `tunelab` on it. Prints one JSON line per command.
ON_A_FULL_TMPFS = """
import hashlib, json, os, shutil, subprocess, sys
source, mount = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount], check=True)
shutil.copytree(source, os.path.join(mount, "ws"))
fd = os.open(os.path.join(mount, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, bytes(4096))
except OSError:
    pass
os.close(fd)
env = {**os.environ, "TUNELAB_WORKSPACE": os.path.join(mount, "ws")}
for args in (["prompt", "list"], ["run", "list"], ["prompt", "new", "p2", "--template-file",
                                                    sys.argv[3]]):
    done = subprocess.run([sys.executable, "-m", "tunelab", *args], env=env,
                          capture_output=True, text=True)
    print(json.dumps([args, done.returncode, done.stderr]), flush=True)
db = os.path.join(mount, "ws", ".tunelab", "tunelab.db")
with open(db, "rb") as fh:
    print(json.dumps(["digest", hashlib.sha256(fh.read()).hexdigest()]))
"""


def test_a_healthy_database_on_a_really_full_disk(workspace: Workspace, tmp_path: Path) -> None:
    """A real full filesystem (tmpfs in a private mount namespace, where allowed)."""
    import json

    if shutil.which("unshare") is None:
        pytest.skip("no unshare: cannot mount a small private tmpfs here")
    _fill(workspace, runs=1)
    template = tmp_path / "t.j2"
    template.write_text("{{ text }}")
    script = tmp_path / "full.py"
    script.write_text(ON_A_FULL_TMPFS)
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["unshare", "-m", sys.executable, str(script), str(workspace.root),
                           str(mount), str(template)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    if done.returncode != 0 or not done.stdout:
        pytest.skip(f"cannot mount a private tmpfs here: {done.stderr.strip()[-200:]}")
    *commands, (_, digest) = [json.loads(line) for line in done.stdout.splitlines()]
    for args, code, stderr in commands:
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, (args, stderr)
        assert "is full" in lines[0] and "free some space" in lines[0], lines[0]
        assert not any(advice in lines[0] for advice in DISCARD_ADVICE), lines[0]
    assert digest == _state(workspace.db_path)[0]  # the copy on the full disk is unchanged


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (sqlite3.OperationalError("database or disk is full"), DiskFullError, "is full"),
        (sqlite3.DatabaseError("database disk image is malformed"), CorruptDatabaseError,
         "is damaged"),
        (sqlite3.DatabaseError("file is not a database"), CorruptDatabaseError,
         "not a readable SQLite database"),
        (sqlite3.OperationalError("attempt to write a readonly database"),
         ReadOnlyDatabaseError, "cannot be written"),
    ],
)  # fmt: skip
def test_errors_raised_from_the_connection_are_classified(
    tmp_path: Path, error: sqlite3.DatabaseError, kind: type[Exception], says: str
) -> None:
    """The same diagnosis from the message alone, as a wrapped driver or a test raises it."""
    translated = DatabaseGuard(tmp_path / "tunelab.db").translate(error)
    assert isinstance(translated, kind) and says in str(translated), translated
    assert "\n" not in str(translated)


def test_a_full_disk_mid_write_rolls_back_and_writes_go_on_once_there_is_room(
    workspace: Workspace,
) -> None:
    with workspace.open_store() as store:
        store.save_prompt_version("p", PromptContent(template="{{ text }}"))
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")  # this connection's disk is full
        with pytest.raises(DiskFullError, match="is full"):
            store.save_prompt_version("p", PromptContent(template="{{ text }}" + "x" * 400_000))
        assert store.get_prompt_version("p").version == 1  # rolled back
        assert store._pool.guard.damaged is None  # full is not damage: writes go on
        store.db.execute("PRAGMA max_page_count = 1073741823")  # space freed
        store.save_prompt_version("p", PromptContent(template="v2 {{ text }}"))
        assert store.get_prompt_version("p").version == 2


def test_tunelab_backup_copies_a_consistent_database(workspace: Workspace, tmp_path: Path) -> None:
    _fill(workspace, runs=1)
    made = run_cli("backup", "--json", workspace=workspace)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    import json

    path = Path(json.loads(made.stdout)["path"])
    assert path.parent == workspace.dir / "backups" and path.suffix == ".db"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    copy = sqlite3.connect(path)
    assert copy.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    assert copy.execute("SELECT COUNT(*) FROM run_outputs").fetchone()[0] == len(ROWS)
    copy.close()
    target = tmp_path / "mine.db"
    assert run_cli("backup", str(target), workspace=workspace).returncode == 0
    assert target.is_file()
    again = run_cli("backup", str(target), workspace=workspace)
    assert "already exists" in _one_line_error(again)


def test_a_damaged_database_can_still_be_backed_up_and_says_so(workspace: Workspace) -> None:
    _fill(workspace, runs=1)
    _corrupt_a_run_outputs_page(workspace.db_path)
    line = _one_line_error(run_cli("backup", workspace=workspace))
    assert "the copy has the database's damage" in line and ".recover" in line, line
    assert list((workspace.dir / "backups").glob("*.db"))


def _old_database(path: Path) -> str:
    """A database with only the first migration applied and some data; returns the next one."""
    second = migrations._migrations[1].name
    conn = sqlite3.connect(path)
    conn.close()
    from sqlite_utils import Database

    db = Database(path)
    migrations.apply(db, stop_before=second)
    db.execute("INSERT INTO prompts (name, created_at) VALUES ('kept', '2026-01-01')")
    db.conn.commit()
    db.close()
    return second


def test_a_backup_is_made_before_migrating_a_database_with_data(tmp_path: Path) -> None:
    path = tmp_path / ".tunelab" / "tunelab.db"
    path.parent.mkdir()
    second = _old_database(path)
    Store(path).close()
    backups = list((path.parent / "backups").glob(f"tunelab-before-{second}-*.db"))
    assert len(backups) == 1, list(path.parent.rglob("*"))
    old = sqlite3.connect(backups[0])
    assert [r[0] for r in old.execute("SELECT name FROM _sqlite_migrations")] == [
        migrations._migrations[0].name
    ]
    assert old.execute("SELECT name FROM prompts").fetchall() == [("kept",)]
    old.close()
    new = sqlite3.connect(path)
    applied = {r[0] for r in new.execute("SELECT name FROM _sqlite_migrations")}
    assert applied == {m.name for m in migrations._migrations}
    new.close()
    Store(path).close()  # nothing pending: no second backup
    assert len(list((path.parent / "backups").glob("*.db"))) == 1


def test_no_backup_for_a_new_workspace(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    Store(ws.db_path).close()
    assert not (ws.dir / "backups").exists()


def _interrupted_run(workspace: Workspace) -> int:
    _fill(workspace, runs=1, finish="interrupted")
    return 1


def test_claiming_a_run_names_its_live_holder(workspace: Workspace) -> None:
    from tunelab.engine.evaluation.run import run_process_alive

    run_id = _interrupted_run(workspace)
    with workspace.open_store() as store:
        seen = store.get_run(run_id)
        before = store.claim_run(run_id, seen, run_process_alive)
        assert before.status == "interrupted"
        claimed = store.get_run(run_id)
        assert claimed.status == "running" and claimed.pid == os.getpid()
        with pytest.raises(RunClaimedError, match=f"already being resumed by pid {os.getpid()}"):
            store.claim_run(run_id, seen, run_process_alive)
        with pytest.raises(RunClaimedError, match=f"still running in process {os.getpid()}"):
            store.claim_run(run_id, claimed, run_process_alive)
        store.release_run_claim(run_id, before)
        assert store.get_run(run_id).status == "interrupted"


# One `eval --resume` with the model work replaced by a wait: it says whether it proceeded.
# The two processes meet at a barrier right before deciding, so they decide at one moment.
RESUMER = """
import os, sys, time
from pathlib import Path
from tunelab.engine.evaluation import run as run_mod
from tunelab.store import Store, StoreError
db, run_id, barrier, release = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
real_refresh = run_mod.refresh_run_states
def refresh(store):
    changed = real_refresh(store)
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 2:
        time.sleep(0.001)
    return changed
def evaluate(store, request, on_progress=None, should_stop=None):
    print("PROCEEDED", flush=True)
    while not release.exists():
        time.sleep(0.01)
    raise SystemExit(0)
run_mod.refresh_run_states = refresh
run_mod.evaluate = evaluate
with Store(db) as store:
    try:
        run_mod.resume_run(store, run_id)
    except Exception as exc:
        print("REFUSED", exc, flush=True)
"""


def test_two_resumes_of_one_run_at_the_same_moment_only_one_proceeds(
    workspace: Workspace, tmp_path: Path
) -> None:
    run_id = _interrupted_run(workspace)
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    barrier, release = tmp_path / "barrier", tmp_path / "release"
    barrier.mkdir()
    procs = [
        subprocess.Popen([sys.executable, str(script), str(workspace.db_path), str(run_id),
                          str(barrier), str(release)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), 120, "one resume to give up")
    finally:
        release.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    said = [out.strip() for out, _ in outputs]
    assert sorted(s.split()[0] for s in said) == ["PROCEEDED", "REFUSED"], outputs
    winner = procs[[s.startswith("PROCEEDED") for s in said].index(True)].pid
    refusal = next(s for s in said if s.startswith("REFUSED"))
    assert (
        f"run {run_id} is already being resumed by pid {winner}" in refusal
        or f"run {run_id} is still running in process {winner}" in refusal
    ), refusal
    assert all(err == "" for _, err in outputs), outputs
    with workspace.open_store() as store:  # the winner's exit before work gave the run back
        assert store.get_run(run_id).status == "interrupted"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tune_helpers import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def test_stderr_is_free_of_library_warnings_and_bars_unless_verbose(
    workspace: Workspace, tiny_dir: Path, tmp_path: Path
) -> None:
    """`model export` loads a LoRA with peft and saves with transformers: a FutureWarning
    (`is_gradient_checkpointing`), a "Loading weights" and a "Writing model shards" bar."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.store import NewModel

    adapter = tmp_path / "adapter"
    base_model = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    get_peft_model(base_model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(
        str(adapter)
    )
    with workspace.open_store() as store:
        base = store.add_model(NewModel("tiny", "base", "hf_folder", str(tiny_dir)))
        store.add_model(NewModel("tiny-lora", "adapter", "artifact", str(adapter),
                                 base_model_id=base.id, method="lora"))  # fmt: skip
    quiet = run_cli("model", "export", "tiny-lora", "--merge", str(tmp_path / "a"),
                    workspace=workspace)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    loud = run_cli("--verbose", "model", "export", "tiny-lora", "--merge", str(tmp_path / "b"),
                   workspace=workspace)  # fmt: skip
    assert loud.returncode == 0, loud.stderr
    assert "is_gradient_checkpointing" in loud.stderr and "Writing model shards" in loud.stderr
