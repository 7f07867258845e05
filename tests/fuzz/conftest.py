"""Fixtures for the fuzz tests: the servers the properties call, started once per module
on an event loop in a background thread (tests/fuzz/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import FrontDoorStack, InferenceStack, LoopThread, RegistryStack


@pytest.fixture(scope="module")
def fuzz_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def inference(
    fuzz_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InferenceStack]:
    stack = InferenceStack(fuzz_loop, tmp_path_factory.mktemp("fuzz-inference"))
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def registry(
    fuzz_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryStack]:
    stack = RegistryStack(fuzz_loop, tmp_path_factory.mktemp("fuzz-registry"))
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def front_door(
    fuzz_loop: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontDoorStack]:
    stack = FrontDoorStack(fuzz_loop, tmp_path_factory.mktemp("fuzz-front-door"))
    yield stack
    stack.close()
