"""The writes a peer makes of the HTTP layer's requests: each a command, built where the request
arrived (ids and times are decided there, never in apply) and committed through `submit`.

Mixed into cluster.peer.Peer, whose submit is its group committer, and into an HTTP worker's
replica (cluster/worker_replica.py), whose submit hands the command to its Raft process.
"""

import random
import time

from registry import commands
from registry.permissions import SYSTEM

from . import tracing

# Instance ids need to be unique, not secret: a generator seeded from os.urandom once, rather
# than a getrandom call per registration (secrets), which showed in profiles under load.
_instance_ids = random.Random()
# Command ids need to be unique among the last few seconds' writes of every peer, not secret.
_command_ids = random.Random()


class PeerWrites:
    def register_instance(self, fields, caller=SYSTEM):
        return self.submit(self._registration(fields, caller))

    def registers_later(self):
        """Whether register_instance_later can be asked. Not of a one-process peer: it learns
        outcomes on its Raft thread, which must never answer HTTP. An HTTP worker's replica can
        (cluster/worker_replica.py)."""
        return False

    def register_instance_later(self, fields, caller, on_done):
        """register_instance without a waiting thread: on_done(result, None) or on_done(None,
        WriteUnavailable) follows exactly once, on the thread that learns the outcome, which
        it must only hand on."""
        raise NotImplementedError("this peer registers only on the request's own thread (registers_later)")

    def _registration(self, fields, caller):
        generated = "inst_%016x" % _instance_ids.getrandbits(64)
        return commands.register_instance(fields, generated, time.time_ns(), caller)

    def remove_instance(self, instance_id, caller=SYSTEM):
        return self.submit(commands.remove_instance(instance_id, caller))

    def remove_node(self, url, caller=SYSTEM):
        return self.submit(commands.remove_node(url, caller))

    def set_permits(self, permits, caller=SYSTEM):
        return self.submit(commands.set_permits(permits, caller))

    def _identified(self, command):
        """The command with the id its re-submissions share, given where the request arrived (an
        HTTP worker's id is kept by its Raft process, so a traced write is one id throughout)."""
        if command.get("type") in commands.NO_STATE_CHANGE or "cid" in command:
            return command
        command = commands.with_id(command, "%016x" % _command_ids.getrandbits(64))
        tracing.request_submitted(command["cid"])
        return command
