"""Graph algorithms the planner needs: a stable topological order and the critical path.

Pure functions over ``{node: [predecessors]}`` mappings; iterative, so a chain of
thousands of steps does not hit the recursion limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


class CycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists it closed (``[a, b, a]``)."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("cycle: " + " -> ".join(cycle))


def topological_order(predecessors: Mapping[str, Sequence[str]]) -> list[str]:
    """Every node once, each after all its predecessors; ties keep the mapping's order.

    Raises CycleError naming one cycle when there is no such order, and KeyError for an
    edge to a node that is not in the mapping.
    """
    index = {node: i for i, node in enumerate(predecessors)}
    remaining = {node: len(set(preds)) for node, preds in predecessors.items()}
    successors: dict[str, list[str]] = {node: [] for node in predecessors}
    for node, preds in predecessors.items():
        for pred in set(preds):
            if pred not in successors:
                raise KeyError(f"{node} depends on unknown step {pred}")
            successors[pred].append(node)

    ready = [(index[n], n) for n, count in remaining.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for succ in successors[node]:
            remaining[succ] -= 1
            if remaining[succ] == 0:
                heapq.heappush(ready, (index[succ], succ))
    if len(order) != len(predecessors):
        raise CycleError(_one_cycle({n: list(p) for n, p in predecessors.items() if remaining[n] > 0}))
    return order


def _one_cycle(predecessors: dict[str, list[str]]) -> list[str]:
    # Every node left has a predecessor that is also left: walk back until a node repeats.
    node = next(iter(predecessors))
    seen: dict[str, int] = {}
    walk: list[str] = []
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = next(p for p in predecessors[node] if p in predecessors)
    loop = walk[seen[node] :]
    loop.reverse()  # predecessors walked backwards; show the direction of the edges
    return [*loop, loop[0]]


def critical_path(
    predecessors: Mapping[str, Sequence[str]], duration: Mapping[str, float], order: Sequence[str]
) -> tuple[list[str], float]:
    """The longest chain of durations through the graph (in ``order``), and its length."""
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for node in order:
        best, best_pred = 0.0, None
        for pred in predecessors[node]:
            if finish[pred] > best:
                best, best_pred = finish[pred], pred
        finish[node] = best + duration[node]
        via[node] = best_pred
    if not finish:
        return [], 0.0
    end = max(order, key=lambda n: finish[n])
    path: list[str] = []
    current: str | None = end
    while current is not None:
        path.append(current)
        current = via[current]
    path.reverse()
    return path, finish[end]
