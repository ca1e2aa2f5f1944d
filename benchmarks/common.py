"""What every benchmark records beside its numbers: machine, date, command, versions."""

import datetime
import json
import shlex
import sys
from pathlib import Path

from translate.machine import machine

RESULTS = Path(__file__).parent / "results"


def write_results(name: str, results: dict, markdown: str) -> Path:
    """Write results/<name>.json and .md, stamped with command, date and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = {
        "command": shlex.join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    record = {**stamp, **results}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    header = f"Command: `{stamp['command']}`  \nDate: {stamp['date']}  \nMachine: {json.dumps(stamp['machine'])}\n\n"
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    return RESULTS / f"{name}.json"
