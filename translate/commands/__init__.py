"""The subcommands that are not LightningCLI's, one module each; cli.py dispatches to them."""
