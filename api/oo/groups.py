"""The `oo` command groups: short aliases for commands, and every failure made one line on
stderr with an exit status (1: the registry refused or no peer answered; 2: a mistyped command)."""

import os
import sys

import click

from ..client import ApiError, NoPeerAnswered

TOKEN_HINT = "set a token with `oo token set TOKEN` (or --token, OO_TOKEN)"


class AliasedGroup(click.Group):
    """A group whose commands also answer to short names (`ls` for `list`, `i` for `instances`)."""

    group_class = type  # subgroups are aliased groups too

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.aliases = {}

    def command(self, *args, aliases=(), **kwargs):
        return self._with_aliases(super().command(*args, **kwargs), aliases)

    def group(self, *args, aliases=(), **kwargs):
        return self._with_aliases(super().group(*args, **kwargs), aliases)

    def _with_aliases(self, decorator, aliases):
        def register(function):
            command = decorator(function)
            for alias in aliases:
                self.aliases[alias] = command.name
            return command
        return register

    def get_command(self, ctx, name):
        return super().get_command(ctx, self.aliases.get(name, name))

    def resolve_command(self, ctx, args):
        # Usage lines and error hints name the command, not the alias that was typed.
        name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else name), command, rest

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            label = ", ".join([name] + [alias for alias, target in self.aliases.items() if target == name])
            rows.append((label, command.get_short_help_str(limit=max(formatter.width - 6 - len(label), 20))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class OoGroup(AliasedGroup):
    """The top-level group: turns every failure into one line on stderr and an exit status."""

    def main(self, args=None, prog_name="oo", complete_var="_OO_COMPLETE", standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(error.exit_code)
        except click.UsageError as error:
            hint = f"; see `{error.ctx.command_path} --help`" if error.ctx else ""
            fail(error.format_message().rstrip(".") + hint, error.exit_code)
        except click.ClickException as error:
            fail(error.format_message(), error.exit_code)
        except ApiError as error:
            fail(str(error) + (f"; {TOKEN_HINT}" if error.status == 401 else ""), 1)
        except NoPeerAnswered as error:
            fail(f"{error}; check the URLs (`oo env ls`, --url) and that the registry is running", 1)
        except (click.Abort, KeyboardInterrupt):
            fail("interrupted", 130)
        except Exception as error:
            if os.environ.get("OO_DEBUG"):
                raise
            fail(f"unexpected {type(error).__name__}: {error} (set OO_DEBUG=1 to see where, and report it)", 1)
        sys.exit(result if isinstance(result, int) else 0)


def fail(message, status):
    click.echo(f"oo: {message}", err=True)
    sys.exit(status)
