"""Prompts, their immutable versions, and movable labels."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from typing import Any

from .base import StoreBase
from .connection import dumps, loads, utc_now
from .errors import NotFoundError, StoreError
from .records import LabelEvent, Prompt, PromptContent, PromptVersion, SaveResult

PROMPT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
VALID_MODES = ("plain", "chat")
VALID_REASONING = ("none", "cot")


def content_hash(content: PromptContent) -> str:
    """A stable hash of everything that changes what the model sees or how it generates."""
    return hashlib.sha256(dumps(asdict(content)).encode()).hexdigest()[:16]


def parse_prompt_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split `NAME`, `NAME@3` or `NAME:production` into (name, version, label)."""
    if "@" in ref:
        name, _, version_text = ref.partition("@")
        if not version_text.isdigit():
            raise StoreError(f"bad prompt reference {ref!r}: the version after @ must be a number")
        return name, int(version_text), None
    if ":" in ref:
        name, _, label = ref.partition(":")
        if not label:
            raise StoreError(f"bad prompt reference {ref!r}: a label must follow ':'")
        return name, None, label
    return ref, None, None


def validate_content(content: PromptContent) -> None:
    if content.mode not in VALID_MODES:
        raise StoreError(f"mode must be one of {', '.join(VALID_MODES)}, not {content.mode!r}")
    if content.reasoning not in VALID_REASONING:
        raise StoreError(
            f"reasoning must be one of {', '.join(VALID_REASONING)}, not {content.reasoning!r}"
        )
    if not content.template.strip():
        raise StoreError("the template is empty; write the text the model should see")
    if not isinstance(content.examples, list) or not all(
        isinstance(e, dict) for e in content.examples
    ):
        raise StoreError("examples must be a list of objects (one per example)")


class PromptStore(StoreBase):
    def prompt_names(self) -> list[str]:
        return [r["name"] for r in self._query("SELECT name FROM prompts ORDER BY name")]

    def _prompt_row(self, name: str) -> dict[str, Any]:
        row = self._one("SELECT * FROM prompts WHERE name = ?", [name])
        if row is None:
            raise NotFoundError("prompt", name, self.prompt_names())
        return row

    def _labels_of(self, prompt_id: int) -> dict[str, int]:
        rows = self._query(
            "SELECT l.label, v.version FROM prompt_labels l JOIN prompt_versions v "
            "ON v.id = l.version_id WHERE l.prompt_id = ? ORDER BY l.label",
            [prompt_id],
        )
        return {r["label"]: r["version"] for r in rows}

    def _prompt_from_row(self, row: dict[str, Any]) -> Prompt:
        latest = self._scalar(
            "SELECT COALESCE(MAX(version), 0) FROM prompt_versions WHERE prompt_id = ?", [row["id"]]
        )
        return Prompt(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            created_at=row["created_at"],
            latest_version=int(latest),
            labels=self._labels_of(row["id"]),
        )

    def _version_from_row(self, row: dict[str, Any], prompt_name: str) -> PromptVersion:
        labels = [
            r["label"]
            for r in self._query(
                "SELECT label FROM prompt_labels WHERE version_id = ? ORDER BY label", [row["id"]]
            )
        ]
        return PromptVersion(
            id=row["id"],
            prompt_id=row["prompt_id"],
            prompt_name=prompt_name,
            version=row["version"],
            template=row["template"],
            system=row["system"],
            examples=loads(row["examples"], []),
            mode=row["mode"],
            reasoning=row["reasoning"],
            settings=loads(row["settings"], {}),
            parent_version_id=row["parent_version_id"],
            message=row["message"],
            content_hash=row["content_hash"],
            created_at=row["created_at"],
            labels=labels,
        )

    def list_prompts(self) -> list[Prompt]:
        return [
            self._prompt_from_row(r) for r in self._query("SELECT * FROM prompts ORDER BY name")
        ]

    def get_prompt(self, name: str) -> Prompt:
        return self._prompt_from_row(self._prompt_row(name))

    def save_prompt_version(
        self,
        name: str,
        content: PromptContent,
        message: str = "",
        description: str | None = None,
        parent_version_id: int | None = None,
    ) -> SaveResult:
        """Save a new immutable version; identical content to the latest version is a no-op.

        Args:
            name: the prompt's name; created on first save.
            content: template, system message, examples, mode, reasoning and settings.
            message: a commit message for the version.
            description: the prompt's description (only used when creating it).
            parent_version_id: the version this one derives from (a prompt search makes
                every candidate a child of its seed); None: the latest version.
        """
        if not PROMPT_NAME_RE.match(name):
            raise StoreError(
                f"bad prompt name {name!r}: use letters, digits, '.', '_' or '-' (max 64)"
            )
        validate_content(content)
        digest = content_hash(content)
        with self._write() as db:
            row = self._one("SELECT * FROM prompts WHERE name = ?", [name])
            if row is None:
                prompt_id = (
                    db.table("prompts")
                    .insert(
                        {"name": name, "description": description or "", "created_at": utc_now()}
                    )
                    .last_pk
                )
                latest = None
            else:
                prompt_id = row["id"]
                latest = self._one(
                    "SELECT * FROM prompt_versions WHERE prompt_id = ? ORDER BY version DESC "
                    "LIMIT 1",
                    [prompt_id],
                )
            if latest is not None and latest["content_hash"] == digest:
                return SaveResult(self._version_from_row(latest, name), created=False)
            version_number = 1 if latest is None else latest["version"] + 1
            version_id = (
                db.table("prompt_versions")
                .insert(
                    {
                        "prompt_id": prompt_id,
                        "version": version_number,
                        "template": content.template,
                        "system": content.system,
                        "examples": dumps(content.examples),
                        "mode": content.mode,
                        "reasoning": content.reasoning,
                        "settings": dumps(content.settings),
                        "parent_version_id": (
                            parent_version_id
                            if parent_version_id is not None
                            else (None if latest is None else latest["id"])
                        ),
                        "message": message,
                        "content_hash": digest,
                        "created_at": utc_now(),
                    }
                )
                .last_pk
            )
            new_row = self._one("SELECT * FROM prompt_versions WHERE id = ?", [version_id])
            assert new_row is not None
            return SaveResult(self._version_from_row(new_row, name), created=True)

    def get_prompt_version(self, ref: str) -> PromptVersion:
        """Resolve `NAME` (latest), `NAME@3` or `NAME:label` to a version."""
        name, version, label = parse_prompt_ref(ref)
        prompt = self._prompt_row(name)
        if label is not None:
            row = self._one(
                "SELECT v.* FROM prompt_labels l JOIN prompt_versions v ON v.id = l.version_id "
                "WHERE l.prompt_id = ? AND l.label = ?",
                [prompt["id"], label],
            )
            if row is None:
                raise NotFoundError(
                    f"label of prompt {name!r}", label, self._labels_of(prompt["id"]).keys()
                )
        elif version is not None:
            row = self._one(
                "SELECT * FROM prompt_versions WHERE prompt_id = ? AND version = ?",
                [prompt["id"], version],
            )
            if row is None:
                versions = [str(v.version) for v in self.list_prompt_versions(name)]
                raise NotFoundError(f"version of prompt {name!r}", str(version), versions)
        else:
            row = self._one(
                "SELECT * FROM prompt_versions WHERE prompt_id = ? ORDER BY version DESC LIMIT 1",
                [prompt["id"]],
            )
            if row is None:
                raise NotFoundError(f"version of prompt {name!r}", "latest", [])
        return self._version_from_row(row, name)

    def get_prompt_version_by_id(self, version_id: int) -> PromptVersion:
        row = self._one(
            "SELECT v.*, p.name AS prompt_name FROM prompt_versions v JOIN prompts p "
            "ON p.id = v.prompt_id WHERE v.id = ?",
            [version_id],
        )
        if row is None:
            raise NotFoundError("prompt version id", str(version_id))
        name = row.pop("prompt_name")
        return self._version_from_row(row, name)

    def list_prompt_versions(self, name: str) -> list[PromptVersion]:
        prompt = self._prompt_row(name)
        rows = self._query(
            "SELECT * FROM prompt_versions WHERE prompt_id = ? ORDER BY version", [prompt["id"]]
        )
        return [self._version_from_row(r, name) for r in rows]

    def set_version_message(self, version_id: int, message: str) -> None:
        """Rewrite a version's commit message; its content (and hash) stays as it is. A
        prompt search saves a candidate before scoring it and writes the score in after."""
        with self._write() as db:
            db.execute("UPDATE prompt_versions SET message = ? WHERE id = ?", [message, version_id])

    def set_label(self, ref: str, label: str) -> tuple[PromptVersion, int | None]:
        """Point `label` at the version `ref` names; returns it and the version it moved from."""
        if not LABEL_RE.match(label):
            raise StoreError(
                f"bad label {label!r}: start with a letter; letters, digits, '_' or '-' (max 32)"
            )
        version = self.get_prompt_version(ref)
        with self._write() as db:
            previous = self._one(
                "SELECT l.version_id, v.version FROM prompt_labels l JOIN prompt_versions v "
                "ON v.id = l.version_id WHERE l.prompt_id = ? AND l.label = ?",
                [version.prompt_id, label],
            )
            now = utc_now()
            db.table("prompt_labels").upsert(
                {
                    "prompt_id": version.prompt_id,
                    "label": label,
                    "version_id": version.id,
                    "updated_at": now,
                },
                pk=("prompt_id", "label"),
            )
            db.table("prompt_label_events").insert(
                {
                    "prompt_id": version.prompt_id,
                    "label": label,
                    "version_id": version.id,
                    "previous_version_id": previous["version_id"] if previous else None,
                    "moved_at": now,
                }
            )
        return self.get_prompt_version(version.ref), (previous["version"] if previous else None)

    def remove_label(self, name: str, label: str) -> None:
        prompt = self._prompt_row(name)
        with self._write() as db:
            previous = self._one(
                "SELECT version_id FROM prompt_labels WHERE prompt_id = ? AND label = ?",
                [prompt["id"], label],
            )
            if previous is None:
                raise NotFoundError(
                    f"label of prompt {name!r}", label, self._labels_of(prompt["id"]).keys()
                )
            db.execute(
                "DELETE FROM prompt_labels WHERE prompt_id = ? AND label = ?", [prompt["id"], label]
            )
            db.table("prompt_label_events").insert(
                {
                    "prompt_id": prompt["id"],
                    "label": label,
                    "version_id": None,
                    "previous_version_id": previous["version_id"],
                    "moved_at": utc_now(),
                }
            )

    def label_history(self, name: str) -> list[LabelEvent]:
        prompt = self._prompt_row(name)
        rows = self._query(
            "SELECT e.label, e.moved_at, v.version AS version, pv.version AS previous "
            "FROM prompt_label_events e "
            "LEFT JOIN prompt_versions v ON v.id = e.version_id "
            "LEFT JOIN prompt_versions pv ON pv.id = e.previous_version_id "
            "WHERE e.prompt_id = ? ORDER BY e.id",
            [prompt["id"]],
        )
        return [LabelEvent(r["label"], r["version"], r["previous"], r["moved_at"]) for r in rows]
