"""Environments, tokens, overrides, completion and the error lines that need no cluster."""

import json
import os
import stat
import subprocess
import sys

import pytest

from api.oo.cli import Target


def config_of(path):
    with open(path / "config.json", encoding="utf-8") as source:
        return json.load(source)


def test_env_add_writes_a_private_config_and_selects_the_first(oo, isolated_config):
    result = oo("env", "add", "local", "http://127.0.0.1:11337/", "http://127.0.0.1:11338",
                "--description", "laptop")
    assert result.exit_code == 0, result.stderr
    assert "added environment local (selected)" in result.stdout
    assert stat.S_IMODE(os.stat(isolated_config / "config.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(isolated_config).st_mode) == 0o700
    assert config_of(isolated_config) == {"selected": "local", "environments": {"local": {
        "urls": ["http://127.0.0.1:11337", "http://127.0.0.1:11338"], "description": "laptop"}}}


def test_env_add_on_an_existing_name_needs_force_and_keeps_the_token(oo, isolated_config):
    assert oo("env", "add", "local", "http://127.0.0.1:11337").exit_code == 0
    assert oo("token", "set", "kept").exit_code == 0
    again = oo("env", "add", "local", "http://127.0.0.1:12337")
    assert again.exit_code == 2
    assert again.stderr.startswith("oo: environment local exists (http://127.0.0.1:11337); give --force to "
                                   "replace its URLs, or choose another name")
    assert config_of(isolated_config)["environments"]["local"]["urls"] == ["http://127.0.0.1:11337"]
    replaced = oo("env", "add", "local", "http://127.0.0.1:12337", "--force")
    assert replaced.exit_code == 0 and "updated environment local" in replaced.stdout
    assert config_of(isolated_config)["environments"]["local"] == {
        "urls": ["http://127.0.0.1:12337"], "description": "", "token": "kept"}


def test_permissions_are_restored_when_the_config_is_rewritten(oo, isolated_config):
    assert oo("env", "add", "local", "http://127.0.0.1:11337").exit_code == 0
    os.chmod(isolated_config / "config.json", 0o644)
    os.chmod(isolated_config, 0o755)
    assert oo("token", "set", "secret-token").exit_code == 0
    assert stat.S_IMODE(os.stat(isolated_config / "config.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(isolated_config).st_mode) == 0o700
    assert [name for name in os.listdir(isolated_config)] == ["config.json"]


def test_env_ls_select_rm_and_their_aliases(oo, isolated_config):
    oo("env", "add", "local", "http://127.0.0.1:11337")
    oo("env", "add", "prod", "https://registry.example.com", "--description", "production")
    listed = oo("env", "ls")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["SELECTED", "NAME", "URLS", "TOKEN", "DESCRIPTION"]
    assert lines[1].split() == ["*", "local", "http://127.0.0.1:11337", "no", "-"]
    assert lines[2].split() == ["-", "prod", "https://registry.example.com", "no", "production"]
    assert oo("env", "list").stdout == listed.stdout

    assert oo("env", "select", "prod").stdout.strip() == "selected environment prod"
    assert [e["name"] for e in json.loads(oo("env", "ls", "-o", "json").stdout) if e["selected"]] == ["prod"]

    assert oo("env", "rm", "prod").exit_code == 0
    assert oo("env", "remove", "local").exit_code == 0
    assert config_of(isolated_config) == {"selected": None, "environments": {}}


def test_env_errors_say_what_to_do(oo):
    oo("env", "add", "local", "http://127.0.0.1:11337")
    unknown = oo("env", "select", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "oo: no environment named 'nope' (known: local)\n"
    bad_url = oo("env", "add", "x", "127.0.0.1:11337")
    assert bad_url.exit_code == 2
    assert bad_url.stderr.startswith("oo: Invalid value for URL: '127.0.0.1:11337' is not a peer URL; "
                                     "give one like http://127.0.0.1:11337")
    assert len(bad_url.stderr.splitlines()) == 1
    oo("env", "rm", "local")
    assert oo("env", "ls").stderr == (
        "oo: no environment configured; add one with `oo env add local http://127.0.0.1:11337`\n")


@pytest.mark.parametrize("command", [["instances", "list"], ["i", "ls"], ["nodes", "ls"], ["n", "rm", "http://x:1"],
                                     ["get", "/registry-svc/instances"], ["token", "set", "t"], ["token", "show"]])
def test_no_environment_configured_says_how_to_add_one(oo, command):
    result = oo(*command)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "oo: no environment configured; add one with `oo env add local http://127.0.0.1:11337`\n"


def test_an_environment_that_is_not_selected_says_how_to_select(oo):
    oo("env", "add", "local", "http://127.0.0.1:11337")
    oo("env", "add", "prod", "https://registry.example.com")
    oo("env", "rm", "local")
    assert oo("i", "ls").stderr == "oo: no environment selected; choose one of prod with `oo env select NAME`\n"


def test_token_set_show_and_overrides(oo, isolated_config):
    oo("env", "add", "local", "http://127.0.0.1:11337")
    assert oo("token", "show").stderr == "oo: no token; set a token with `oo token set TOKEN` (or --token, OO_TOKEN)\n"
    assert oo("token", "set", "-", input="from-stdin\n").exit_code == 0
    assert oo("token", "show").stdout == "from-stdin\n"
    assert oo("token", "set", "stored").stdout == "token set for environment local\n"
    assert config_of(isolated_config)["environments"]["local"]["token"] == "stored"
    assert oo("token", "show").stdout == "stored\n"
    assert oo("--token", "flag", "token", "show").stdout == "flag\n"
    assert oo("token", "show", env={"OO_TOKEN": "from-env"}).stdout == "from-env\n"
    assert "token" not in oo("env", "ls", "-o", "json").stdout.replace('"hasToken"', "")
    assert oo("token", "set", "two words").exit_code == 2


def test_urls_and_tokens_resolve_flags_then_environment(oo):
    oo("env", "add", "local", "http://127.0.0.1:11337", "http://127.0.0.1:11338")
    oo("token", "set", "stored")
    assert Target((), None, False).resolve() == (["http://127.0.0.1:11337", "http://127.0.0.1:11338"], "stored")
    # A peer of the selected environment gets its token; any other URL gets only an explicit one.
    assert Target(("http://127.0.0.1:11338",), None, False).resolve() == (["http://127.0.0.1:11338"], "stored")
    assert Target(("http://elsewhere:1",), None, False).resolve() == (["http://elsewhere:1"], None)
    # However the peer's host is spelled: localhost is 127.0.0.1, and only at the same port and scheme.
    assert Target(("http://localhost:11338/",), None, False).resolve() == (["http://localhost:11338/"], "stored")
    assert Target(("http://localhost:11339",), None, False).resolve()[1] is None
    assert Target(("https://localhost:11338",), None, False).resolve()[1] is None
    assert Target(("http://a:1,http://b:2", "http://c:3"), "t", False).resolve() == (
        ["http://a:1", "http://b:2", "http://c:3"], "t")


def test_urls_given_by_flag_need_no_environment(oo):
    result = oo("--url", "http://127.0.0.1:1", "--token", "t", "token", "show")
    assert result.exit_code == 0 and result.stdout == "t\n"
    bad = oo("--url", "not-a-url", "i", "ls")
    assert bad.exit_code == 2 and "is not a peer URL" in bad.stderr


def test_usage_errors_are_one_line_with_a_hint(oo):
    result = oo("frobnicate")
    assert result.exit_code == 2
    assert result.stderr == "oo: No such command 'frobnicate'; see `oo --help`\n"
    missing = oo("i", "rm")
    assert missing.stderr == "oo: Missing argument 'ID'; see `oo instances remove --help`\n"
    fields = oo("--url", "http://127.0.0.1:1", "put", "/x", "--a=1", "--a.b=2")
    assert fields.exit_code == 2
    assert fields.stderr.startswith("oo: --a.b nests inside --a, which already has a value")


def test_help_lists_aliases(oo):
    top = oo("--help").stdout
    assert "instances, i" in top and "nodes, n" in top
    assert "list, ls" in oo("i", "--help").stdout and "remove, rm" in oo("i", "--help").stdout
    assert "delete, rm" in oo("n", "--help").stdout


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _oo_completion oo"),
                                           ("zsh", "#compdef oo")])
def test_completion_scripts(oo, shell, marker):
    result = oo("completion", shell)
    assert result.exit_code == 0
    assert marker in result.stdout and "_OO_COMPLETE" in result.stdout


def test_completion_completes_commands_and_environment_names(oo):
    oo("env", "add", "local", "http://127.0.0.1:11337")
    commands = oo(env={"_OO_COMPLETE": "bash_complete", "COMP_WORDS": "oo i ", "COMP_CWORD": "2"})
    assert commands.stdout.split() == ["plain,list", "plain,remove"]
    names = oo(env={"_OO_COMPLETE": "zsh_complete", "COMP_WORDS": "oo env select l", "COMP_CWORD": "3"})
    assert "local" in names.stdout.split()


def test_a_broken_config_file_says_how_to_recover(oo, isolated_config):
    isolated_config.mkdir(parents=True)
    (isolated_config / "config.json").write_text("{not json")
    result = oo("env", "ls")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"oo: cannot read {isolated_config / 'config.json'}: ")
    assert result.stderr.rstrip().endswith("fix the file or delete it and add environments again")


def test_the_client_and_cli_import_neither_registry_nor_cluster():
    # The architecture rule: a program that talks to the registry needs only HTTP.
    probe = ("import sys, api.oo, api.client; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'registry', 'cluster', 'flask', 'pysyncobj'}))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"
