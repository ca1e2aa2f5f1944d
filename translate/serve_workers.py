"""`translate serve`'s workers: each model has one queue and one thread; requests that arrive while it
translates a batch wait, and go together (up to `max_batch` of them) into its next batch, so concurrent clients
share batches and no two batches run through one model at once. The pool takes a query's jobs (or refuses the
whole query, 503) and drains on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from translate.lab import explain
from translate.serve_limits import Limits, Query, RequestError
from translate.serve_schema import model_result
from translate.translator import Translator


@dataclass
class Job:
    query: Query
    future: asyncio.Future = field(repr=False)


class Worker:
    """One model's queue, and the one thread that translates its batches in turn."""

    def __init__(self, name: str, translator: Translator, max_batch: int) -> None:
        self.name, self.translator, self.max_batch = name, translator, max_batch
        self.queue: deque[Job] = deque()  # waiting
        self.batch: list[Job] = []  # taken from the queue, being translated
        self.wakeup = asyncio.Event()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"translate-{name}")
        self.task: asyncio.Task | None = None
        self.translating = 0  # requests in the batch being translated
        self.translated = 0  # texts, since the start

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name=f"worker {self.name}")
        self.task.add_done_callback(self.stopped)

    def stopped(self, task: asyncio.Task) -> None:
        """(When run() ends, which it does only if it fails or is cancelled.) Answer its jobs 503."""
        cause = "cancelled" if task.cancelled() else repr(task.exception())
        self.fail(RequestError(f"model {self.name} is not available: its worker stopped ({cause})", 503))

    def fail(self, error: RequestError) -> None:
        for job in [*self.batch, *self.queue]:
            if not job.future.done():
                job.future.set_exception(error)
        self.queue.clear()

    def stop(self, error: RequestError) -> None:
        """Answer every job `error`, end run() and the thread (after the batch it may be translating)."""
        self.fail(error)
        if self.task is not None:
            self.task.cancel()
        self.thread.shutdown(wait=False, cancel_futures=True)

    def put(self, job: Job) -> None:
        self.queue.append(job)
        self.wakeup.set()

    def withdraw(self, job: Job) -> None:
        """The job is no longer wanted: it leaves the queue (and is skipped if its batch has not started)."""
        job.future.cancel()
        with contextlib.suppress(ValueError):
            self.queue.remove(job)

    async def run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                self.batch = [self.queue.popleft() for _ in range(min(self.max_batch, len(self.queue)))]
                for settings in dict.fromkeys(job.query.settings for job in self.batch):
                    jobs = [job for job in self.batch if job.query.settings == settings and not job.future.done()]
                    if jobs:
                        await self.translate(jobs)
                self.batch = []

    async def translate(self, jobs: list[Job]) -> None:
        """Translate the jobs (of one setting) as one batch; if that fails, each alone, so that one
        failing request fails no other. If the thread is gone, run() fails with it."""
        running = asyncio.get_running_loop().run_in_executor(self.thread, self.run_batch, jobs)
        self.translating = len(jobs)
        try:
            answers = await running
        except Exception as e:
            if len(jobs) > 1:
                for job in jobs:
                    if not job.future.done():
                        await self.translate([job])
            elif not jobs[0].future.done():
                jobs[0].future.set_exception(RequestError(f"{self.name} failed: {type(e).__name__}: {e}", 500))
            return
        finally:
            self.translating = 0
        self.translated += sum(len(job.query.texts) for job in jobs)
        for job, answer in zip(jobs, answers, strict=True):
            if not job.future.done():
                job.future.set_result(answer)

    def run_batch(self, jobs: list[Job]) -> list[dict]:
        """(In the worker thread.) Each job's answer from this model, all decoded (and explained) at once."""
        start, (beam_size, alpha, attention, n_best, split) = time.perf_counter(), jobs[0].query.settings
        texts = [text for job in jobs for text in job.query.texts]
        found = self.translator.translate(
            texts,
            beam_size,
            alpha,
            n_best,
            return_details=True,
            attention=attention,
            block_attention=False,
            split_sentences=split,
        )
        nbests = found if n_best > 1 else [[translation] for translation in found]
        asked = [job.query.saliency for job in jobs for _ in job.query.texts]
        explained = explain(self.translator, [nbest[0] for nbest in nbests], asked, attention)
        seconds, gradients = time.perf_counter() - start, self.translator.model.has_gradients
        ends = list(itertools.accumulate((len(job.query.texts) for job in jobs), initial=0))
        return [
            model_result(job.query, nbests[a:b], explained[a:b], seconds, len(jobs), gradients)
            for job, (a, b) in zip(jobs, itertools.pairwise(ends), strict=True)
        ]


class Pool:
    """The models' workers: they take a query's jobs or refuse the whole query, and drain on shutdown."""

    def __init__(self, workers: dict[str, Worker], limits: Limits) -> None:
        self.workers, self.limits = workers, limits
        self.translators = {name: worker.translator for name, worker in workers.items()}
        self.closing: asyncio.Task | None = None

    @property
    def dead(self) -> list[str]:
        return [name for name, worker in self.workers.items() if not worker.alive]

    def admit(self, query: Query) -> None:
        """Refuse (503) the query if any model it asks cannot take it now."""
        if self.closing is not None:
            raise RequestError("the server is shutting down", 503)
        for name in query.models:
            if not self.workers[name].alive:
                raise RequestError(f"model {name} is not available: its worker stopped", 503)
            if len(self.workers[name].queue) >= self.limits.queue:
                raise RequestError(f"{name}'s queue is full ({self.limits.queue} requests waiting, the limit)", 503)

    def submit(self, query: Query) -> list[Job]:
        """One job a model, queued; or, if any asked model cannot take it, none (503)."""
        self.admit(query)
        loop = asyncio.get_running_loop()
        jobs = [Job(query, loop.create_future()) for _ in query.models]
        for name, job in zip(query.models, jobs, strict=True):
            self.workers[name].put(job)
        return jobs

    def withdraw(self, query: Query, jobs: list[Job]) -> None:
        for name, job in zip(query.models, jobs, strict=True):
            self.workers[name].withdraw(job)

    def drain(self) -> asyncio.Task:
        """Start (once) shutting down: refuse new requests, wait up to `limits.shutdown_seconds` for the
        queued ones, then answer what is left 503 and stop the workers. The task doing it."""
        if self.closing is None:
            self.closing = asyncio.create_task(self._drain())
        return self.closing

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.shutdown_seconds
        busy = [worker for worker in self.workers.values() if worker.alive]
        while loop.time() < deadline and any(worker.queue or worker.batch for worker in busy):
            await asyncio.sleep(0.02)
        error = f"the server is shutting down (queued work got {self.limits.shutdown_seconds:g} s to finish)"
        for worker in self.workers.values():
            worker.stop(RequestError(error, 503))
        await asyncio.gather(*(w.task for w in self.workers.values() if w.task is not None), return_exceptions=True)
