"""Hypothesis driven as a fuzzer: every generated value is judged; nothing shrinks or stops
early."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning

T = TypeVar("T")


def explore(
    strategy: st.SearchStrategy[T],
    run_one: Callable[[T], None],
    *,
    examples: int,
    seed: int | None = None,
) -> None:
    """Feed `examples` generated values to `run_one`, which judges and records; never shrinks or
    stops early (a fuzz run reports every failure kind it meets, with its smallest input)."""

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def property_(value: T) -> None:
        run_one(value)

    if seed is not None:
        property_ = hypothesis_seed(seed)(property_)
    with warnings.catch_warnings():
        # aiortc on the loop thread draws from `random` while hypothesis generates here.
        warnings.filterwarnings(
            "ignore", message=".*random.*", category=HypothesisDeprecationWarning
        )
        property_()
