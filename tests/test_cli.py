"""The `translate` command: its table of subcommands, the dispatch, and command lines from function signatures."""

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from translate.cli import SUBCOMMANDS, cli, main
from translate.commands import average, export, generate, serve
from translate.commands.arguments import parse
from translate.export import QUANTIZATIONS

NAMES = ["fit", "validate", "test", "predict", "generate", "evaluate", "leaderboard", "average", "export", "serve"]


def test_help_lists_every_subcommand_and_imports_neither_torch_nor_lightning():
    code = (
        "import sys; sys.argv = ['translate', '--help']; from translate.cli import main; main(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'lightning_fabric'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *usage, loaded = out.stdout.splitlines()
    assert loaded == "[]"
    listed = [line.split()[0] for line in usage if line.startswith("  ")]
    assert listed == list(SUBCOMMANDS) and sorted(listed) == sorted(NAMES)
    assert all(len(line.split()) > 1 for line in usage if line.startswith("  "))  # each with its help


@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0 and "usage:" in capsys.readouterr().out


def test_an_unknown_subcommand_is_named(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["trian"])
    assert exited.value.code == 2 and "unknown subcommand 'trian'" in capsys.readouterr().err


def test_translate_cli_cli_is_the_lightning_cli(capsys):
    with pytest.raises(SystemExit):
        cli(["fit", "--help"])
    assert "--decoding.beam_size" in capsys.readouterr().out


def test_the_command_lines_in_use_parse_as_before():
    averaged = parse(average.run, "translate average", ["--checkpoints", "a.ckpt", "b.ckpt", "--output", "avg.ckpt"])
    assert averaged == {"checkpoints": [Path("a.ckpt"), Path("b.ckpt")], "output": Path("avg.ckpt")}
    exported = parse(export.run, "translate export", ["--checkpoint", "c.ckpt", "--output", "out", "--force"])
    assert exported["force"] is True and exported["quantization"] == "int8" and exported["alpha"] == 1.0
    served = parse(
        serve.run,
        "translate serve",
        ["--checkpoint", "gru=a.ckpt", "--checkpoint", "t=b", "--max-batch", "4", "--shutdown-timeout", "2"],
    )
    assert served["checkpoint"] == ("gru=a.ckpt", "t=b") and (served["max_batch"], served["shutdown_timeout"]) == (4, 2)
    assert parse(serve.run, "translate serve", [])["checkpoint"] == ()
    generated = parse(generate.run, "translate generate", ["--checkpoint", "c", "--beam-size", "2"])
    assert generated["split_sentences"] is True and generated["input"] is None and generated["beam_size"] == 2
    unsplit = parse(generate.run, "translate generate", ["--checkpoint", "c", "--no-split-sentences"])
    assert unsplit["split_sentences"] is False


def test_options_are_checked_and_helped_from_the_signature(capsys):
    with pytest.raises(SystemExit):
        parse(export.run, "translate export", ["--checkpoint", "c", "--output", "o", "--quantization", "int4"])
    with pytest.raises(SystemExit):
        parse(average.run, "translate average", ["--output", "o"])  # --checkpoints is required
    assert typing.get_args(typing.get_type_hints(export.run)["quantization"]) == QUANTIZATIONS
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parse(serve.run, "translate serve", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-batch MAX_BATCH requests a model translates together, at most (default: 16)" in text
