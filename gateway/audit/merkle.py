"""RFC 6962 (Certificate Transparency) Merkle tree hashing, inclusion proofs and their check.

leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right). A tree of n leaves splits at
the largest power of two below n; equivalently, built level by level, an unpaired last node moves
up unchanged. `Frontier` keeps only the roots of the perfect subtrees (O(log n)) so that the
writer can give the root at any size without holding every leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The running root of an append-only tree."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left first

    def append(self, leaf: bytes) -> None:
        height, node = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            node = node_hash(left, node)
            height += 1
        self._stack.append((height, node))
        self.size += 1

    def to_json(self) -> dict[str, object]:
        return {"size": self.size, "subtrees": [[h, node.hex()] for h, node in self._stack]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Frontier:
        frontier = cls()
        frontier.size = int(data["size"])  # type: ignore[call-overload]
        subtrees = data["subtrees"]
        assert isinstance(subtrees, list)
        frontier._stack = [(int(h), bytes.fromhex(str(node))) for h, node in subtrees]
        if sum(1 << h for h, _ in frontier._stack) != frontier.size:
            raise ValueError("frontier subtrees do not add up to its size")
        return frontier

    def subtrees(self) -> list[tuple[int, bytes]]:
        """(height, hash) of each perfect subtree, left first (heights strictly decrease)."""
        return list(self._stack)

    def copy(self) -> Frontier:
        twin = Frontier()
        twin.size, twin._stack = self.size, list(self._stack)
        return twin

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def root_of(leaves: Sequence[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


class Tree:
    """Every level of a tree over `leaves`, for inclusion proofs (the export builds one).

    `base` stands in for leaves that were pruned: the tree's first `base.size` leaves are known
    only through the roots of the base's perfect subtrees, and no level holds anything left of
    what the leaves that remain need. At height h a level starts at node `base.size >> h`, or
    one node earlier where the base has a subtree of height h: that subtree's root, which is the
    left sibling its neighbour needs. So every level starts at an even node, its pairs line up,
    and every audit path of a remaining leaf is complete.
    """

    def __init__(self, leaves: Sequence[bytes], base: Frontier | None = None) -> None:
        pruned = base.size if base is not None else 0
        self.first = pruned
        self.size = pruned + len(leaves)
        roots = dict(base.subtrees()) if base is not None else {}  # height -> root
        level, offset, width = list(leaves), pruned, self.size
        self._levels: list[tuple[int, int, list[bytes]]] = []  # (first index, width, nodes)
        while True:
            if len(self._levels) in roots:
                level.insert(0, roots[len(self._levels)])
                offset -= 1
            self._levels.append((offset, width, level))
            if width <= 1:
                break
            above = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:  # the level's last node, unpaired, moves up unchanged
                above.append(level[-1])
            level, offset, width = above, offset // 2, (width + 1) // 2

    def root(self) -> bytes:
        return self._levels[-1][2][0] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf `index` (0-based), bottom up, as RFC 6962 defines it."""
        if not self.first <= index < self.size:
            raise IndexError(index)
        path: list[bytes] = []
        for offset, width, level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < width:
                assert sibling >= offset  # see the class's docstring
                path.append(level[sibling - offset])
            index //= 2
        return path


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162, section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
