"""Fails when the files of one source directory include each other, directly or in a cycle.

Usage: include_cycles.py ROOT DIR. A module is a .h with its .cc (data/loader.h and
data/loader.cc are one module); an edge is a quoted #include of another module of DIR. Prints
each cycle found, as a path of modules, and exits 1; prints the include order and exits 0 when
there is none.
"""
import os
import re
import sys

INCLUDE = re.compile(r'\s*#\s*include\s+"([^"]+)\.h"')


def modules(root, directory):
    found = {}
    for name in sorted(os.listdir(os.path.join(root, directory))):
        stem, ext = os.path.splitext(name)
        if ext not in ('.h', '.cc'):
            continue
        deps = found.setdefault(stem, set())
        with open(os.path.join(root, directory, name), encoding='utf-8') as f:
            for line in f:
                m = INCLUDE.match(line)
                if m and os.path.dirname(m.group(1)) == directory:
                    dep = os.path.basename(m.group(1))
                    if dep != stem:
                        deps.add(dep)
    return {m: {d for d in deps if d in found} for m, deps in found.items()}


def cycle_through(graph, start):
    """The shortest path start -> ... -> start, or None."""
    parent, queue = {start: None}, [start]
    for node in queue:  # breadth first: queue grows while it is walked
        for dep in sorted(graph[node]):
            if dep == start:
                path = [node]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if dep not in parent:
                parent[dep] = node
                queue.append(dep)
    return None


def canonical(cycle):
    """The cycle started at its least module, so that each is reported once."""
    ring = cycle[:-1]
    i = ring.index(min(ring))
    return tuple(ring[i:] + ring[:i] + [ring[i]])


def main():
    root, directory = sys.argv[1], sys.argv[2]
    graph = modules(root, directory)
    cycles = {canonical(c) for m in graph if (c := cycle_through(graph, m))}
    for c in sorted(cycles):
        print(f'{directory}/: include cycle ' + ' -> '.join(c))
    if cycles:
        return 1
    level = {}

    def depth(m):
        if m not in level:
            level[m] = 1 + max((depth(d) for d in graph[m]), default=-1)
        return level[m]

    for m in sorted(graph, key=lambda m: (depth(m), m)):
        print(f'{depth(m)} {m}: {", ".join(sorted(graph[m])) or "-"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
