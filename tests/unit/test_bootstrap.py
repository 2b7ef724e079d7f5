"""Start-up warnings about configurations that cannot work as a cluster."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from realtimechat.bootstrap import build_files
from realtimechat.settings import Settings

WARNING = "only this process sees"


def files_warnings(
    caplog: pytest.LogCaptureFixture, data_dir: Path, db_url: str, **files: Any
) -> list[str]:
    settings = Settings(data_dir=data_dir, files=files)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="realtimechat.bootstrap"):
        uow = SimpleNamespace(db=SimpleNamespace(url=db_url))
        build_files(settings, cast(Any, uow), "secret")
    return [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]


def test_local_files_on_a_shared_database_warn_unless_a_shared_directory_is_set(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    pg = "postgresql+psycopg://db/chat"
    [warning] = files_warnings(caplog, tmp_path, pg)
    assert "RTC_FILES__LOCAL_DIR" in warning
    assert files_warnings(caplog, tmp_path, pg, local_dir=str(tmp_path / "shared")) == []
    assert files_warnings(caplog, tmp_path, f"sqlite:///{tmp_path}/realtimechat.db") == []
