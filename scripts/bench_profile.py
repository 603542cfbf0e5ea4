#!/usr/bin/env python3
"""Summarise py-spy's collapsed stacks (`bench.py --profile-dir DIR` writes them): the functions
with the most samples, on their own (self) and with what they call (inclusive), per thread kind.

    python scripts/bench_profile.py DIR/write-follower-c64.txt [--top 25] [--match api/,registry/]
"""

import argparse
import collections
import re


def parse(path):
    """[(frames leaf-last, samples)]; py-spy's raw format is 'frame;frame;... count' per line."""
    stacks = []
    with open(path, encoding="utf-8", errors="replace") as source:
        for line in source:
            line = line.rstrip("\n")
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame):
    # "function (path/to/file.py:123)" -> "function (file.py)", grouping all lines of a function.
    match = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    parts = path.split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({where})"


def thread_kind(frames):
    text = ";".join(frames)
    if "waitress" in text and ("handler_thread" in text or "service" in text):
        return "http worker"
    if "_autoTickThread" in text or "_onTick" in text:
        return "raft"
    if "waitress" in text:
        return "http accept/io"
    return "other"


def process_kind(raw_frames):
    # With --subprocesses py-spy prefixes each stack with the process chain, the innermost last.
    processes = [f for f in raw_frames if f.startswith("process ")]
    if not processes:
        return "one process"
    number = re.search(r"api\.worker --number (\d+)", processes[-1])
    return f"http worker {number.group(1)}" if number else "raft process"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    stacks = parse(args.path)
    total = sum(count for _, count in stacks)
    idle_names = ("wait (threading.py)", "select (selectors.py)", "poll (selectors.py)", "acquire", "_wait_for_tstate_lock")
    by_kind = collections.Counter()
    by_process = collections.Counter()
    own = collections.Counter()
    inclusive = collections.Counter()
    for frames, count in stacks:
        by_process[process_kind(frames)] += count
        frames = [short(f) for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        by_kind[thread_kind(frames)] += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    print(f"{args.path}: {total} samples")
    print("by process: " + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(by_process.items())))
    print("by thread kind: " + ", ".join(f"{k} {v / total:.0%}" for k, v in by_kind.most_common()))
    print(f"\nself (top {args.top}):")
    for name, count in own.most_common(args.top):
        idle = " (waiting)" if any(n in name for n in idle_names) else ""
        print(f"  {count / total:6.1%}  {name}{idle}")
    print(f"\ninclusive (top {args.top}):")
    for name, count in inclusive.most_common(args.top):
        print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
