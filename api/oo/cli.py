"""The `oo` command line: 1Backend's commands for the registry, on top of api.client.

Errors end the program with one line on stderr (`oo: 403 Forbidden: missing permission ...`)
and a non-zero status: 1 when the registry refused or no peer answered, 2 for a mistyped
command. Set OO_DEBUG=1 to see the traceback of an unexpected error instead.
"""

import json
import random
import re
import sys
from datetime import datetime, timezone

import click
from click.shell_completion import get_completion_class

from ..client import (
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, ApiError, RegistryClient, same_peer, validate_base_url,
)
from ..resolver import describe, live_instances
from . import display
from .config import Config, ConfigError
from .fields import FieldError, body_from_flags, query_from_flags
from .groups import TOKEN_HINT, OoGroup

INSTANCE_STATUSES = ("Unknown", "Healthy", "Degraded", "Unreachable", "Error")
COMPLETION_SHELLS = ("bash", "zsh", "fish")


class Target:
    """Which peers and token the registry commands use: flags and OO_* over the selected environment."""

    def __init__(self, urls, token, verbose, connect_timeout=DEFAULT_CONNECT_TIMEOUT, read_timeout=DEFAULT_READ_TIMEOUT):
        self.urls = [url for value in urls for url in re.split(r"[,\s]+", value) if url]
        self.token = token
        self.verbose = verbose
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def resolve(self):
        """(peer urls, token or None)."""
        if self.urls and self.token:
            return self.urls, self.token
        config = Config.load()
        if not self.urls:
            _, environment = config.selected_environment()
            return environment["urls"], self.token or environment.get("token")
        # Peers given by hand get the selected environment's token only when they are its peers,
        # so `--url` never sends a token to a server it was not configured for.
        environment = config.environments.get(config.selected) or {}
        known = environment.get("urls", ())
        if environment.get("token") and all(any(same_peer(url, peer) for peer in known) for url in self.urls):
            return self.urls, environment["token"]
        return self.urls, self.token

    def client(self):
        urls, token = self.resolve()
        try:
            return RegistryClient(urls, token, on_failover=self._report_failover,
                                  connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
        except ValueError as error:
            raise click.UsageError(str(error))

    def _report_failover(self, failed_url, reason, next_url):
        if self.verbose:
            click.echo(f"oo: {failed_url} did not answer ({reason}); trying {next_url}", err=True)


def _status(value):
    """A status as the API spells it, whatever the case it was typed in."""
    if value is None:
        return None
    spelled = {status.lower(): status for status in INSTANCE_STATUSES}.get(value.lower())
    if spelled is None:
        raise click.BadParameter(f"'{value}' is not one of {', '.join(INSTANCE_STATUSES)}", param_hint="'--status'")
    return spelled


output_option = click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table",
                             show_default=True, help="json prints the records as the API returns them, for scripts.")


def _now():
    return datetime.now(timezone.utc)


def _print_json(document):
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@click.group(cls=OoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", "urls", multiple=True, envvar="OO_URL", metavar="URL",
              help="Peer to use instead of the selected environment's; repeat it or separate with commas. "
                   "[env: OO_URL]")
@click.option("--token", envvar="OO_TOKEN", help="Bearer token to use instead of the environment's. [env: OO_TOKEN]")
@click.option("-v", "--verbose", is_flag=True, help="Say when a peer does not answer and the next one is tried.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), envvar="OO_CONNECT_TIMEOUT",
              default=DEFAULT_CONNECT_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long to wait for a connection to each peer. [env: OO_CONNECT_TIMEOUT]")
@click.option("--timeout", "read_timeout", type=click.FloatRange(min=0.1), envvar="OO_TIMEOUT",
              default=DEFAULT_READ_TIMEOUT, show_default=True, metavar="SECONDS",
              help="How long to wait for a connected peer's answer before trying the next (a write waits "
                   "up to 5 s for its commit). [env: OO_TIMEOUT]")
@click.pass_context
def cli(ctx, urls, token, verbose, connect_timeout, read_timeout):
    """oo: the 1Backend command line for Registry Svc.

    \b
    Start with an environment (the peers of one cluster) and a token:
      oo env add local http://127.0.0.1:11337 http://127.0.0.1:11338 http://127.0.0.1:11339
      oo token set "$TOKEN"
      oo i ls

    Options go before the command: oo --url http://127.0.0.1:11338 -v nodes ls
    """
    ctx.obj = Target(urls, token, verbose, connect_timeout, read_timeout)


# -- instances ----------------------------------------------------------------------------------

@cli.group(aliases=["i"])
def instances():
    """Service instances: list and remove."""


@instances.command(name="list", aliases=["ls"])
@click.option("--id", "instance_id", help="Only the instance with this id.")
@click.option("--slug", help="Only instances owned by this slug.")
@click.option("--status", metavar=f"[{'|'.join(INSTANCE_STATUSES)}]", callback=lambda _c, _p, value: _status(value),
              help="Only instances with this status (any letter case).")
@click.option("--tag", "tags", multiple=True, help="Only instances with this tag; repeat to require several.")
@click.option("--node-url", help="Only instances on the registry node with this URL.")
@click.option("--host")
@click.option("--ip")
@click.option("--scheme")
@click.option("--path")
@click.option("--deployment-id")
@output_option
@click.pass_obj
def list_instances(target, instance_id, slug, status, tags, node_url, host, ip, scheme, path, deployment_id, output):
    """List instances (filters are exact matches and combine)."""
    records = target.client().list_instances(
        id=instance_id, slug=slug, status=status, tags=tags, node_url=node_url, host=host, ip=ip, scheme=scheme,
        path=path, deployment_id=deployment_id)
    if output == "json":
        _print_json(records)
        return
    click.echo(display.table(*display.instance_rows(records, _now())))


@instances.command(name="remove", aliases=["rm"])
@click.argument("instance_id", metavar="ID")
@click.pass_obj
def remove_instance(target, instance_id):
    """Remove the instance with this ID."""
    try:
        target.client().remove_instance(instance_id)
    except ApiError as error:
        if error.status == 404:
            error.message += f" (no instance has id {instance_id}; `oo i ls` lists them)"
        raise
    click.echo(f"removed instance {instance_id}")


# -- nodes --------------------------------------------------------------------------------------

@cli.group(aliases=["n"])
def nodes():
    """Registry nodes (the peers' machines): list and delete records."""


@nodes.command(name="list", aliases=["ls"])
@click.option("--id", "ids", multiple=True, help="Only the node with this id; repeat for several.")
@output_option
@click.pass_obj
def list_nodes(target, ids, output):
    """List nodes with their usage; STATUS is Stale when a node missed three 15 s heartbeats."""
    records = target.client().list_nodes(ids)
    if output == "json":
        _print_json(records)
        return
    click.echo(display.table(*display.node_rows(records, _now())))


@nodes.command(name="delete", aliases=["rm"])
@click.argument("url")
@click.pass_obj
def delete_node(target, url):
    """Delete the record of the node with this URL (a live peer writes it again at its next heartbeat)."""
    try:
        target.client().remove_node(url)
    except ApiError as error:
        if error.status == 404:
            error.message += "; `oo n ls` lists the node URLs"
        raise
    click.echo(f"deleted node {url}")


# -- resolving ----------------------------------------------------------------------------------

@cli.command()
@click.argument("slug")
@click.option("--tag", "tags", multiple=True, help="Only instances with this tag; repeat to require several.")
@click.option("--all", "every", is_flag=True, help="Print every live URL, one a line.")
@click.pass_obj
def resolve(target, slug, tags, every):
    """Print a live URL of SLUG, picked at random: its Healthy instances, or all when none is Healthy."""
    live = live_instances(target.client().list_instances(slug=slug, tags=tags))
    if not live:
        raise click.ClickException(f"no instance of {describe(slug, tags)} is registered (`oo i ls` lists them)")
    urls = [instance["url"] for instance in live]
    click.echo("\n".join(urls) if every else random.choice(urls))


# -- generic calls ------------------------------------------------------------------------------

def _generic(method):
    @cli.command(name=method.lower(), context_settings={"ignore_unknown_options": True})
    @click.argument("path")
    @click.argument("fields", nargs=-1, type=click.UNPROCESSED)
    @click.pass_obj
    def call(target, path, fields):
        try:
            if method == "GET":
                params, body = query_from_flags(fields), None
            else:
                params, body = None, (body_from_flags(fields) if fields else None)
        except FieldError as error:
            raise click.UsageError(str(error))
        answer = target.client().request(method, path, params=params, body=body)
        if answer is not None:
            _print_json(answer)

    call.short_help = (f"{method} PATH, --name=value flags as "
                       + ("query parameters." if method == "GET" else "a JSON body."))
    call.help = (f"{method} PATH with --name=value fields as "
                 + ("query parameters (a repeated flag repeats the parameter)." if method == "GET" else
                    "a JSON body: --a.b=1 nests, a repeated flag makes a list, integers and true/false are "
                    "typed, a JSON array or object is parsed (--tags='[\"dev\"]'), '\"007\"' stays a string.")
                 + " Prints the answer as JSON.")
    return call


for _method in ("GET", "PUT", "POST", "DELETE"):
    _generic(_method)


# -- environments and tokens --------------------------------------------------------------------

def _complete_environment(ctx, param, incomplete):
    try:
        names = Config.load().environments
    except ConfigError:
        return []
    return [name for name in sorted(names) if name.startswith(incomplete)]


@cli.group()
def env():
    """Environments: the peer URLs of a cluster, and its token."""


@env.command(name="add")
@click.argument("name")
@click.argument("urls", metavar="URL [URL...]", nargs=-1, required=True)
@click.option("--description", default="", help="A note shown by `oo env ls`.")
@click.option("--force", is_flag=True, help="Replace the URLs of an environment that exists (its token stays).")
def add_environment(name, urls, description, force):
    """Add an environment; list every peer so commands fail over between them."""
    try:
        urls = [validate_base_url(url) for url in urls]
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="URL")
    config = Config.load()
    existed = name in config.environments
    if existed and not force:
        raise click.UsageError(f"environment {name} exists ({', '.join(config.environments[name]['urls'])}); "
                               f"give --force to replace its URLs, or choose another name")
    environment = config.environments.setdefault(name, {})
    environment.update({"urls": urls, "description": description})
    if config.selected not in config.environments or config.selected == name:
        config.selected = name
    config.save()
    selected = " (selected)" if config.selected == name else f"; select it with `oo env select {name}`"
    click.echo(f"{'updated' if existed else 'added'} environment {name}{selected}")


@env.command(name="list", aliases=["ls"])
@output_option
def list_environments(output):
    """List environments; * marks the selected one. Tokens are not shown."""
    config = Config.load()
    records = [{"name": name, "selected": name == config.selected, "urls": environment.get("urls", []),
                "description": environment.get("description", ""), "hasToken": bool(environment.get("token"))}
               for name, environment in sorted(config.environments.items())]
    if output == "json":
        _print_json(records)
        return
    if not records:
        raise ConfigError("no environment configured; add one with `oo env add local http://127.0.0.1:11337`")
    rows = [("*" if r["selected"] else "", r["name"], ",".join(r["urls"]), "yes" if r["hasToken"] else "no",
             r["description"]) for r in records]
    click.echo(display.table(("SELECTED", "NAME", "URLS", "TOKEN", "DESCRIPTION"), rows))


@env.command(name="select")
@click.argument("name", shell_complete=_complete_environment)
def select_environment(name):
    """Use this environment from now on."""
    config = Config.load()
    config.environment(name)
    config.selected = name
    config.save()
    click.echo(f"selected environment {name}")


@env.command(name="remove", aliases=["rm"])
@click.argument("name", shell_complete=_complete_environment)
def remove_environment(name):
    """Forget an environment and its token."""
    config = Config.load()
    config.environment(name)
    del config.environments[name]
    if config.selected == name:
        config.selected = None
    config.save()
    click.echo(f"removed environment {name}")


@cli.group()
def token():
    """The bearer token sent to the selected environment."""


@token.command(name="set")
@click.argument("value", metavar="TOKEN")
def set_token(value):
    """Keep TOKEN for the selected environment; give - to read it from stdin (out of shell history)."""
    if value == "-":
        value = sys.stdin.read()
    value = value.strip()
    if not value or any(character.isspace() for character in value):
        raise click.BadParameter("a token is one word without spaces, e.g. what `registry token create` prints",
                                 param_hint="TOKEN")
    config = Config.load()
    name, environment = config.selected_environment()
    environment["token"] = value
    config.save()
    click.echo(f"token set for environment {name}")


@token.command(name="show")
@click.pass_obj
def show_token(target):
    """Print the token commands would send (--token and OO_TOKEN count)."""
    _, value = target.resolve()
    if not value:
        raise ConfigError(f"no token; {TOKEN_HINT}")
    click.echo(value)


# -- shell completion ---------------------------------------------------------------------------

@cli.command()
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
@click.pass_context
def completion(ctx, shell):
    """Print the completion script for SHELL.

    \b
    bash: add to ~/.bashrc   eval "$(oo completion bash)"
    zsh:  add to ~/.zshrc    eval "$(oo completion zsh)"
    fish: oo completion fish > ~/.config/fish/completions/oo.fish
    """
    completer = get_completion_class(shell)(ctx.find_root().command, {}, "oo", "_OO_COMPLETE")
    click.echo(completer.source())


def main(args=None):
    cli.main(args=args, prog_name="oo")
