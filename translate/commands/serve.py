"""`translate serve`: checkpoints over HTTP, and a page that shows the models side by side (translate/serve.py)."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from translate.commands.arguments import named_checkpoints, parse
from translate.export import is_exported
from translate.report import read_report
from translate.serve import Limits, Server, create_app
from translate.serve_evidence import Evidence
from translate.translator import Translator


def run(
    checkpoint: tuple[str, ...] = (),
    report: Path = Path("reports/leaderboard.json"),
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 16,
    device: str = "auto",
    queue: int = Limits.queue,
    deadline: float = Limits.deadline_seconds,
    max_connections: int = 256,
    shutdown_timeout: float = Limits.shutdown_seconds,
    dataset: str | None = None,
) -> None:
    """Serve checkpoints over HTTP: POST /translate, GET /models, /health, the report's evidence (GET
    /evidence, /evidence/BUCKET, /examples) and a page at / that shows the models side by side. Limits and
    what is guaranteed: translate/serve.py.

    Args:
        checkpoint: NAME=PATH, once per model (default: the report's models)
        report: test BLEU and figures
        host: the address to listen on
        port: the port to listen on
        max_batch: requests a model translates together, at most
        device: auto, cpu or cuda
        queue: requests waiting per model (more: 503)
        deadline: seconds to answer (504)
        max_connections: open connections, at most (more: uvicorn answers 503)
        shutdown_timeout: seconds queued work gets to finish on shutdown (the rest: 503)
        dataset: where the report's test split comes from, for /evidence/BUCKET and /examples: a Hub id,
            a local folder or file (default: the report's test_set.dataset)
    """
    for name, value in (("max-batch", max_batch), ("queue", queue), ("max-connections", max_connections)):
        if value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}")
    if not deadline > 0 or not shutdown_timeout >= 0:
        raise ValueError(
            f"--deadline must be over 0 and --shutdown-timeout at least 0, got {deadline}, {shutdown_timeout}"
        )
    shown = read_report(report) if report.is_file() else {}
    if dataset is not None and not shown:
        raise ValueError(f"--dataset gives the report's test set, but there is no report at {report}")
    evidence = Evidence(shown, report.parent, dataset) if shown else None
    checkpoints = named_checkpoints(checkpoint) or {m["name"]: m["checkpoint"] for m in shown.get("models", [])}
    if not checkpoints:
        raise ValueError(f"no --checkpoint NAME=PATH given, and no report at {report} to take them from")
    missing = {name: path for name, path in checkpoints.items() if not (Path(path).is_file() or is_exported(path))}
    if missing:
        raise FileNotFoundError(f"checkpoints not found: {missing} (train them, or pass --checkpoint NAME=PATH)")
    models = {name: (Path(path), Translator.from_checkpoint(path, device)) for name, path in checkpoints.items()}
    limits = Limits(queue=queue, deadline_seconds=deadline, shutdown_seconds=shutdown_timeout)
    app = create_app(models, shown, report.parent, max_batch, limits, evidence)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=shutdown_timeout + 1,  # the second more writes the drain's 503s
    )
    Server(config).run()


def serve(argv: list[str]) -> None:
    """`translate serve ARGUMENTS` (see :func:`run`)."""
    run(**parse(run, "translate serve", argv))
