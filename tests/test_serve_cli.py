"""``cloudfilm serve`` refuses to expose unauthenticated data beyond loopback."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli


def test_non_loopback_host_is_refused_without_the_insecure_flag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    result = run_cli(["serve", "--data", str(tmp_path / "data"), "--host", "0.0.0.0",
                      "--port", "0", "--dimse-port", "0"], url)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "--insecure-no-auth" in result.stderr
