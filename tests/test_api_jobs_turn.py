"""The job table's per-key line: jobs and requests answered in place take turns in
the order they asked, a waiter gives up cleanly, and nothing is left behind."""

from __future__ import annotations

import asyncio
import threading

import pytest

from branchdb.daemon.api.jobs import JobTable
from branchdb.daemon.core.errors import Refused


def test_jobs_and_turns_run_in_the_order_they_asked() -> None:
    async def main() -> list[str]:
        table = JobTable()
        order: list[str] = []
        gate = threading.Event()

        def slow() -> tuple[int, dict[str, str]]:
            gate.wait(10)
            order.append("job 1")
            return 200, {}

        def quick(name: str) -> tuple[int, dict[str, str]]:
            order.append(name)
            return 200, {}

        table.start("webhook:up", "p", "b", slow, key="p\0b")

        async def request() -> None:
            async with table.turn("p\0b", "up request", timeout=10, busy="busy"):
                order.append("request")

        waiting = asyncio.create_task(request())
        await asyncio.sleep(0.05)
        # Started after the request asked: runs after it.
        job3 = table.start("up", "p", "b", lambda: quick("job 3"), key="p\0b")
        other = table.start("up", "p", "c", lambda: quick("other key"), key="p\0c")
        await asyncio.sleep(0.05)
        gate.set()
        await waiting
        while table.get(job3.id).status == "running":  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
        assert table.get(other.id).status == "succeeded"  # type: ignore[union-attr]
        assert not table._lines
        return order

    assert asyncio.run(main()) == ["other key", "job 1", "request", "job 3"]


def test_a_turn_times_out_naming_the_holder_and_leaves_the_line() -> None:
    async def main() -> None:
        table = JobTable()
        gate = threading.Event()

        def slow() -> tuple[int, dict[str, str]]:
            gate.wait(10)
            return 200, {}

        job = table.start("webhook:up", "p", "b", slow, key="k")
        with pytest.raises(Refused) as caught:
            async with table.turn("k", "up request", timeout=0.1, busy="b is busy"):
                pass
        assert "b is busy" in str(caught.value)
        assert f"webhook:up job {job.id}" in str(caught.value)
        assert len(table._lines["k"]) == 1  # only the job's place is left
        gate.set()
        async with table.turn("k", "up request", timeout=10, busy="busy"):
            assert job.status == "succeeded"
        assert not table._lines

    asyncio.run(main())


def test_a_cancelled_waiter_passes_the_turn_on() -> None:
    async def main() -> None:
        table = JobTable()
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with table.turn("k", "first", timeout=10, busy="b", shared=False):
                held.set()
                await release.wait()

        async def waiter(name: str, into: list[str]) -> None:
            async with table.turn("k", name, timeout=10, busy="b", shared=False):
                into.append(name)

        got: list[str] = []
        first = asyncio.create_task(holder())
        await held.wait()
        gone = asyncio.create_task(waiter("gone", got))
        last = asyncio.create_task(waiter("last", got))
        await asyncio.sleep(0.01)
        gone.cancel()  # a client that hung up while waiting
        release.set()
        await asyncio.gather(first, last)
        assert got == ["last"] and not table._lines

    asyncio.run(main())


def test_requests_next_to_each_other_share_the_turn() -> None:
    """Two requests answered in place run side by side; a job started while they
    run waits for both, and a request after that job waits for it."""

    async def main() -> list[str]:
        table = JobTable()
        order: list[str] = []
        inside = asyncio.Event()
        release = asyncio.Event()

        async def request(name: str) -> None:
            async with table.turn("k", name, timeout=10, busy="busy"):
                order.append(f"{name} in")
                if name == "r2":
                    inside.set()
                await release.wait()
                order.append(f"{name} out")

        r1 = asyncio.create_task(request("r1"))
        r2 = asyncio.create_task(request("r2"))
        await inside.wait()  # r2 got in while r1 still holds the turn

        def work() -> tuple[int, dict[str, str]]:
            order.append("job")
            return 200, {}

        job = table.start("webhook:up", "p", "b", work, key="k")
        r3 = asyncio.create_task(request("r3"))
        await asyncio.sleep(0.05)
        assert job.status == "running" and "r3 in" not in order
        release.set()
        await asyncio.gather(r1, r2, r3)
        assert job.finished_at is not None
        assert not table._lines
        return order

    order = asyncio.run(main())
    assert order[:2] == ["r1 in", "r2 in"]
    assert order.index("job") > max(order.index("r1 out"), order.index("r2 out"))
    assert order.index("r3 in") > order.index("job")


def test_a_request_passes_a_passable_job_and_jobs_do_not() -> None:
    """Publishing (passable) keeps its place before the branch's next job, but a
    request answered in place does not wait for it."""

    async def main() -> None:
        table = JobTable()
        gate = threading.Event()
        order: list[str] = []

        def publish() -> tuple[int, dict[str, str]]:
            gate.wait(10)
            order.append("publish")
            return 200, {}

        def provision() -> tuple[int, dict[str, str]]:
            order.append("job")
            return 200, {}

        pub = table.start("publish", "p", "b", publish, key="k", passable=True)
        job = table.start("webhook:up", "p", "b", provision, key="k")
        with pytest.raises(Refused) as caught:  # behind the job, not the publication
            async with table.turn("k", "up request", timeout=0.1, busy="busy"):
                pass
        assert f"webhook:up job {job.id}" in str(caught.value)
        await asyncio.sleep(0.05)
        assert job.status == "running" and not order
        gate.set()
        async with table.turn("k", "up request", timeout=10, busy="busy"):
            order.append("request")
        assert order == ["publish", "job", "request"]
        assert pub.status == job.status == "succeeded"

        gate.clear()
        pub = table.start("publish", "p", "b", publish, key="k", passable=True)
        async with table.turn("k", "up request", timeout=10, busy="busy"):
            order.append("request passed")  # the publication is still running
        assert pub.status == "running"
        gate.set()
        while pub.status == "running":
            await asyncio.sleep(0.01)
        assert order[-2:] == ["request passed", "publish"] and not table._lines

    asyncio.run(main())
