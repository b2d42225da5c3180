"""The `magcache` command line (entry point `main`). Imported lazily so `--help` stays fast."""


def main() -> None:
    from magcache_cli.cli.app import main as _main

    _main()
