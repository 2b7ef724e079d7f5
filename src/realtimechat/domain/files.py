"""Uploaded files: the record, and the checks on what a client declares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from realtimechat.domain.text import line_problem
from realtimechat.ids import iso

FileState = Literal["pending", "ready", "deleted"]
# Used with fullmatch: `$` would also accept a trailing newline. The media type is ASCII
# (RFC 6838 restricted names) because it is sent back verbatim as a response header.
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(f"{_TOKEN}/{_TOKEN}")


@dataclass(frozen=True)
class FileRecord:
    id: str
    team_id: str | None
    uploader_id: str
    name: str
    size: int
    content_type: str
    sha256: str
    state: FileState
    storage_key: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": self.team_id,
            "uploader_id": self.uploader_id,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "state": self.state,
            "created_at": iso(self.created_at),
        }

    def attachment(self) -> dict[str, Any]:
        """How a message shows the file."""
        return {
            "file_id": self.id,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
        }


def storage_key(team_id: str, file_id: str) -> str:
    """Where a file's bytes live; the prefix lets reconciliation list a team's objects."""
    return f"teams/{team_id}/{file_id}"


def file_id_of_key(key: str) -> str:
    """The file id a storage key names (see storage_key)."""
    return key.rpartition("/")[2]


def is_media_type(value: str) -> bool:
    """Whether `value` is a bare media type (type/subtype) safe to send as a header."""
    return len(value) <= 255 and _CONTENT_TYPE.fullmatch(value) is not None


def declared_problem(name: str, size: int, content_type: str, sha256: str) -> str | None:
    """What is wrong with an upload's declaration (its field first), or None."""
    if not name.strip() or len(name) > 255 or any(c in name for c in "/\\") or line_problem(name):
        return "name: 1 to 255 characters, without / \\ or control characters"
    if size < 1:
        return "size: at least 1 byte"
    if not is_media_type(content_type):
        return "content_type: a media type such as image/png"
    if not _SHA256.fullmatch(sha256):
        return "sha256: 64 lowercase hex digits"
    return None
