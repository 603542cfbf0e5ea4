"""Commands: the plain-data messages that travel through the Raft log.

Each has a `type` and a version `v`, so a journal written by one code version stays readable
by the next. Everything that varies between peers (ids, times) is chosen here, by the
proposer, and never inside apply.
"""

VERSION = 1

REGISTER_INSTANCE = "instance.register"
REMOVE_INSTANCE = "instance.remove"
REPORT_NODE = "node.report"
REMOVE_NODE = "node.remove"


def register_instance(fields, generated_id, now_ns):
    return {"type": REGISTER_INSTANCE, "v": VERSION, "fields": fields, "generatedId": generated_id, "now": now_ns}


def remove_instance(instance_id):
    return {"type": REMOVE_INSTANCE, "v": VERSION, "id": instance_id}


def report_node(record, now_ns):
    return {"type": REPORT_NODE, "v": VERSION, "node": record, "now": now_ns}


def remove_node(url):
    return {"type": REMOVE_NODE, "v": VERSION, "url": url}
