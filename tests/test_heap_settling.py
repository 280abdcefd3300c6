"""What the gateway builds at start is kept out of the cyclic collector's walks while it serves,
and a reload lets go of what the previous settle kept: nothing is held for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.server.main import YOUNG_COLLECTION_THRESHOLD, settle_heap


class Node:
    """Stands for a policy: objects that refer to each other, so only the collector frees them."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test session runs with the collector as usual
    gc.set_threshold(*threshold)


def test_what_exists_when_serving_begins_is_not_walked_by_collections() -> None:
    policy = Node()
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert not any(obj is policy for obj in gc.get_objects())
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD  # young collections come far less often


def test_a_replaced_policy_is_freed_by_the_next_settle() -> None:
    policy = Node()
    gone = weakref.ref(policy)
    settle_heap()  # at start: the policy is kept out of the collector's walks
    del policy  # a reload swapped it out; its cycle keeps it alive until collected
    assert gone() is not None
    settle_heap(again=True)  # the reload settles again
    assert gone() is None


def test_a_reload_leaves_a_collector_that_was_never_settled_as_it_was() -> None:
    """A gateway started inside another program (the test suite) is reloaded without freezing it."""
    gc.unfreeze()  # as in a program whose gateway never began serving by settling
    threshold = gc.get_threshold()
    settle_heap(again=True)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
