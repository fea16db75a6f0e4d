from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.test import override_settings

import schemata
from tests.testapp.models import Note

ROUNDS = 20


@override_settings(SCHEMATA_POOL={"max_size": 16})  # every thread holds one the whole time
def test_sixteen_threads_each_see_only_their_own_schema(light_schemas: tuple[str, ...]) -> None:
    names = light_schemas[:16]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            with schemata.override(name):
                for i in range(ROUNDS):
                    Note.objects.create(title=f"{name}-{i}")
                    seen = set(Note.objects.values_list("title", flat=True))
                    assert seen == {f"{name}-{j}" for j in range(i + 1)}
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for name in names:
        assert Note.objects.using(name).count() == ROUNDS


def test_sixty_four_asyncio_tasks_each_see_only_their_own_schema(
    light_schemas: tuple[str, ...],
) -> None:
    async def task(name: str) -> int:
        schemata.activate(name)
        for i in range(5):
            await Note.objects.acreate(title=f"{name}-{i}")
            await asyncio.sleep(0)  # let the other tasks interleave
            seen = {note.title async for note in Note.objects.all()}
            assert seen == {f"{name}-{j}" for j in range(i + 1)}
        return await Note.objects.acount()

    async def main() -> list[int]:
        return await asyncio.gather(*(task(name) for name in light_schemas))

    counts = async_to_sync(main)()

    assert counts == [5] * 64
    assert schemata.get_current_schema() is None
    assert sorted(Note.objects.using("t63").values_list("title", flat=True)) == [
        f"t63-{i}" for i in range(5)
    ]


@pytest.mark.usefixtures("light_schemas")
def test_a_thread_started_by_the_user_gets_no_schema() -> None:
    seen: list[object] = []

    with schemata.override("t10"):
        thread = threading.Thread(target=lambda: seen.append(schemata.get_current_schema()))
        thread.start()
        thread.join()

    assert seen == [None]
