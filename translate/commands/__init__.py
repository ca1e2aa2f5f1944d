"""The subcommands of `translate`, one module each (lightning.py: fit, validate, test and predict); cli.py
names them and dispatches to them. arguments.py builds a command line from a function's signature."""
