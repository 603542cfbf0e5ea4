"""The `oo` configuration: named environments (peer URLs, a description, a token), one selected.

Kept in the user's config directory ($XDG_CONFIG_HOME/oo/config.json, else what click knows
for the platform, ~/.config/oo on Linux) with mode 0600 in a 0700 directory, since it holds
bearer tokens.
"""

import json
import os
import tempfile

import click

CONFIG_FILE = "config.json"
ADD_ENVIRONMENT_HINT = "add one with `oo env add local http://127.0.0.1:11337`"


class ConfigError(click.ClickException):
    """The configuration cannot be read, or lacks what a command needs; says what to run."""


def config_dir():
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return os.path.join(xdg, "oo")
    return click.get_app_dir("oo")


def config_path():
    return os.path.join(config_dir(), CONFIG_FILE)


class Config:
    def __init__(self, path, document):
        self.path = path
        self.selected = document.get("selected")
        self.environments = document.get("environments") or {}

    @classmethod
    def load(cls):
        path = config_path()
        try:
            with open(path, encoding="utf-8") as source:
                document = json.load(source)
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read {path}: {error}; fix the file or delete it and add environments again")
        if not isinstance(document, dict) or not isinstance(document.get("environments", {}), dict):
            raise ConfigError(f"{path} is not an oo config; delete it and add environments again")
        return cls(path, document)

    def save(self):
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        text = json.dumps({"selected": self.selected, "environments": self.environments}, indent=2) + "\n"
        # mkstemp creates the file 0600; replacing atomically means no reader sees half a file.
        handle, temporary = tempfile.mkstemp(prefix=".config-", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as target:
                target.write(text)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise

    def environment(self, name):
        if name not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none yet; " + ADD_ENVIRONMENT_HINT
            raise ConfigError(f"no environment named '{name}' (known: {known})")
        return self.environments[name]

    def selected_environment(self):
        """(name, environment) of the selected one; ConfigError saying how to get one otherwise."""
        if not self.environments:
            raise ConfigError(f"no environment configured; {ADD_ENVIRONMENT_HINT}")
        if self.selected not in self.environments:
            raise ConfigError(f"no environment selected; choose one of {', '.join(sorted(self.environments))} "
                              f"with `oo env select NAME`")
        return self.selected, self.environments[self.selected]
