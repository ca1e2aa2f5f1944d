"""The `translate` command: LightningCLI over the three models and the shared datamodule.

translate fit|validate|test|predict --config configs/<model>.yaml [--trainer.* ...] [--model.* ...]
"""

from __future__ import annotations

import logging

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from translate.data import TranslationDataModule
from translate.models import Seq2SeqModule


class TranslateCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the model's vocabulary comes from the datamodule's tokenizer, never from a number in a config
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_id", "model.init_args.pad_id", apply_on="instantiate")


def cli(args: list[str] | None = None) -> TranslateCLI:
    """Run the CLI on `args` (default: the command line) and return it."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return TranslateCLI(
        Seq2SeqModule,
        TranslationDataModule,
        subclass_mode_model=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
