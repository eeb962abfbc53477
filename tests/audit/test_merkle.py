"""Our RFC 6962 code against an independent implementation from PyPI (pymerkle)."""

from __future__ import annotations

import random
import warnings

from pymerkle import InmemoryTree

from gateway.audit.merkle import Frontier, Tree, leaf_hash, root_of, verify_inclusion


def test_roots_and_inclusion_proofs_match_pymerkle_for_sizes_1_to_1000() -> None:
    rng = random.Random(6962)
    reference = InmemoryTree(algorithm="sha256")
    leaves: list[bytes] = []
    frontier = Frontier()
    for n in range(1, 1001):
        data = f"record {n}".encode()
        reference.append_entry(data)
        leaves.append(leaf_hash(data))
        frontier.append(leaves[-1])
        assert reference.get_leaf(n) == leaves[-1]
        tree = Tree(leaves)
        assert tree.root() == reference.get_root() == frontier.root() == root_of(leaves), n
        indices = range(n) if n <= 64 else {0, n - 1, n // 2, *rng.sample(range(n), 3)}
        for i in indices:
            ours = tree.inclusion_proof(i)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                theirs = reference.prove_inclusion(i + 1, n).serialize()["path"]
            # pymerkle's path starts with the leaf itself
            assert [bytes.fromhex(h) for h in theirs] == [leaves[i], *ours], (n, i)
            assert verify_inclusion(leaves[i], i, n, ours, tree.root())


def test_after_pruning_the_frontier_proves_every_remaining_leaf_as_the_whole_tree_does() -> None:
    """A tree missing its first `pruned` leaves, with their frontier instead, gives the same
    root and the same audit paths for the leaves that remain (the whole tree's are checked
    against pymerkle above)."""
    leaves = [leaf_hash(f"record {i}".encode()) for i in range(130)]
    for n in range(1, 131):
        whole = Tree(leaves[:n])
        base = Frontier()
        for pruned in range(n + 1):
            tree = Tree(leaves[pruned:n], base)
            assert tree.root() == whole.root(), (n, pruned)
            for i in range(pruned, n):
                assert tree.inclusion_proof(i) == whole.inclusion_proof(i), (n, pruned, i)
            if pruned < n:
                base.append(leaves[pruned])


def test_a_proof_does_not_verify_for_another_leaf_index_size_or_root() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(13)]
    tree = Tree(leaves)
    proof = tree.inclusion_proof(5)
    assert verify_inclusion(leaves[5], 5, 13, proof, tree.root())
    assert not verify_inclusion(leaves[6], 5, 13, proof, tree.root())
    assert not verify_inclusion(leaves[5], 4, 13, proof, tree.root())
    assert not verify_inclusion(leaves[5], 5, 8, proof, tree.root())
    assert not verify_inclusion(leaves[5], 5, 5, proof, tree.root())
    assert not verify_inclusion(leaves[5], 5, 13, proof, Tree(leaves[:12]).root())
    assert not verify_inclusion(leaves[5], 5, 13, proof[:-1], tree.root())


def test_a_frontier_survives_its_json_form() -> None:
    frontier = Frontier()
    for i in range(37):
        frontier.append(leaf_hash(bytes([i])))
    again = Frontier.from_json(frontier.to_json())
    assert again.root() == frontier.root() and again.size == 37
