import pytest
from click.testing import CliRunner

from api.oo import cli


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    """Every test gets its own config directory, so the user's real `oo` config is never touched."""
    config_home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    for name in ("OO_URL", "OO_TOKEN", "OO_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    return config_home / "oo"


@pytest.fixture
def oo():
    """Run `oo ARGS...` in-process; the result has exit_code, stdout and stderr apart."""
    runner = CliRunner()

    def run(*args, input=None, env=None):
        return runner.invoke(cli, [str(arg) for arg in args], input=input, env=env, prog_name="oo")

    return run
