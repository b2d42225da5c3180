"""scripts/setup.sh does nothing when everything is installed: run it twice against a stand-in venv whose
`python` only logs its arguments, and count the pip calls."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_second_setup_installs_nothing(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (repo / "magcache_cli").mkdir()
    log = tmp_path / "calls.log"
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake = venv_bin / "python"
    # logs every call; `-c` checks (import torch / magcache_cli) succeed
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> {log}\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}

    def pip_calls() -> list[str]:
        return [line for line in log.read_text().splitlines() if line.startswith("-m pip")] if log.exists() else []

    subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, check=True, timeout=60)
    first = pip_calls()
    assert any("install -q -e .[dev]" in c for c in first)
    subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, check=True, timeout=60)
    assert pip_calls() == first  # nothing reinstalled
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text() + "\n# changed\n")
    subprocess.run(["bash", "scripts/setup.sh"], cwd=repo, env=env, check=True, timeout=60)
    assert len(pip_calls()) > len(first)  # a changed pyproject.toml installs again
