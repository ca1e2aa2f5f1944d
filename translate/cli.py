"""The `translate` command: LightningCLI over any LightningModule and the shared datamodule."""

import lightning as L
from lightning.pytorch.cli import LightningCLI

from translate.data import TranslationDataModule


def main() -> None:
    LightningCLI(L.LightningModule, TranslationDataModule, subclass_mode_model=True)


if __name__ == "__main__":
    main()
