"""The writes a peer makes of the HTTP layer's requests: each a command, built where the request
arrived (ids and times are decided there, never in apply) and committed through `submit`.

Mixed into cluster.peer.Peer, whose submit is its group committer, and into an HTTP worker's
replica (cluster/worker_replica.py), whose submit hands the command to its Raft process.
"""

import random
import time

from registry import commands
from registry.permissions import SYSTEM

# Instance ids need to be unique, not secret: a generator seeded from os.urandom once, rather
# than a getrandom call per registration (secrets), which showed in profiles under load.
_instance_ids = random.Random()


class PeerWrites:
    def register_instance(self, fields, caller=SYSTEM):
        generated = "inst_%016x" % _instance_ids.getrandbits(64)
        return self.submit(commands.register_instance(fields, generated, time.time_ns(), caller))

    def remove_instance(self, instance_id, caller=SYSTEM):
        return self.submit(commands.remove_instance(instance_id, caller))

    def remove_node(self, url, caller=SYSTEM):
        return self.submit(commands.remove_node(url, caller))

    def set_permits(self, permits, caller=SYSTEM):
        return self.submit(commands.set_permits(permits, caller))
