#!/usr/bin/env python3
"""Attributes the samples of `perf script` output (from `perf record --call-graph dwarf` on ecomd)
to ecomd's components, for docs/performance.md "Where the time goes".

    perf script -i perf.data > perf.txt && python3 bench/profile_components.py perf.txt

Prints three breakdowns, in percent of all samples: the component of each sample (the innermost
frame that names one of COMPONENTS), who called SQLite's COMMIT (samples under
Database::commit, by component), and the library of the sample's leaf frame.
"""
import collections
import sys

# Frame substrings, innermost match wins; more specific names first where they nest.
COMPONENTS = [
    "Store::apply", "mark_sent", "Consumer::commit_all", "Consumer::heartbeat", "refresh_log_ends",
    "Consumer::fetch", "EmbeddedBus::publish", "flush_deletes", "remove_through", "saga",
    "OrderModule::Impl::create", "on_status", "InventoryModule", "PaymentModule", "payment",
    "decode_envelope", "Consumer::serve", "prune", "run_pump", "Consumer::dead_letter",
    "Consumer::run", "BeastServer", "DeliveryWorker", "Relay", "LiveHub", "Stream",
    "scheduler::run",
]


def component(frames):
    for f in frames:
        for name in COMPONENTS:
            if name in f:
                return name
    return "other"


def library(leaf):
    if "kernel" in leaf:
        return "kernel"
    if "sqlite" in leaf:
        return "sqlite"
    if "libc" in leaf:
        return "libc"
    return "ecomd and others"


def main(path):
    by_component = collections.Counter()
    commits = collections.Counter()
    by_library = collections.Counter()
    total = 0
    for sample in open(path, errors="replace").read().split("\n\n"):
        lines = [l.strip() for l in sample.strip().split("\n")[1:]]
        if not lines:
            continue
        total += 1
        frames = [l.split(" ", 1)[1] if " " in l else l for l in lines]
        by_component[component(frames)] += 1
        if any("Database::commit" in f for f in frames):
            commits[component(frames)] += 1
        by_library[library(frames[0])] += 1
    if total == 0:
        sys.exit("no samples in " + path)

    def show(title, counter):
        print(title)
        for name, n in counter.most_common():
            print(f"  {100.0 * n / total:5.1f}%  {name}")

    print(f"{total} samples")
    show("by component:", by_component)
    show("under Database::commit, by component:", commits)
    show("by library of the leaf frame:", by_library)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
