"""The ``jaxpick`` command line: a thin layer of argparse over library calls."""
